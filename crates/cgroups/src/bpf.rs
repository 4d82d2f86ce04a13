//! The device allow-list as a `BPF_PROG_TYPE_CGROUP_DEVICE` program, for cgroup v2, which has
//! no `devices` controller: the kernel runs the program on every mknod and open of a device
//! node by a process of the cgroup, and refuses the operation when it returns 0. Written as
//! raw instructions (a dozen kinds suffice), so generating it is a pure function that tests
//! check by running the program on an interpreter of those instructions.

use crate::devices::{DeviceKind, DeviceRule};

/// One eBPF instruction (`struct bpf_insn`): opcode, destination register in the low nibble
/// and source register in the high nibble of `regs`, offset, immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// `r<dst> = *(u32 *)(r<src> + off)`.
pub const LDX_W: u8 = 0x61;
/// `w<dst> &= imm` (32-bit ALU, immediate).
pub const AND32_K: u8 = 0x54;
/// `w<dst> >>= imm`.
pub const RSH32_K: u8 = 0x74;
/// `w<dst> = w<src>`.
pub const MOV32_X: u8 = 0xbc;
/// `r<dst> = imm`.
pub const MOV64_K: u8 = 0xb7;
/// `if r<dst> != imm goto +off`.
pub const JNE_K: u8 = 0x55;
/// Return r0.
pub const EXIT: u8 = 0x95;

/// `struct bpf_cgroup_dev_ctx`: `access_type` (`access << 16 | kind`), `major`, `minor`.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;
/// `BPF_DEVCG_DEV_BLOCK`, `BPF_DEVCG_DEV_CHAR`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

// Registers: r1 is the context, then r2 = kind, r3 = access, r4 = major, r5 = minor; r1 is
// reused as a scratch register once those are loaded.
const R0: u8 = 0;
const R1: u8 = 1;
const R_KIND: u8 = 2;
const R_ACCESS: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// The program allowing exactly what `rules` allow: after loading the context, one block per
/// rule whose checks each jump past the block on a mismatch and whose end returns 1 (allow);
/// falling off the last block returns 0 (deny). Rules naming a number above `i32::MAX` can
/// match no real device (majors have 12 bits, minors 20) and are left out.
pub fn device_program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut prog = vec![
        insn(LDX_W, R_KIND, R1, CTX_ACCESS_TYPE, 0),
        insn(AND32_K, R_KIND, 0, 0, 0xffff),
        insn(LDX_W, R_ACCESS, R1, CTX_ACCESS_TYPE, 0),
        insn(RSH32_K, R_ACCESS, 0, 0, 16),
        insn(LDX_W, R_MAJOR, R1, CTX_MAJOR, 0),
        insn(LDX_W, R_MINOR, R1, CTX_MINOR, 0),
    ];
    for rule in rules {
        if let Some(block) = rule_block(rule) {
            prog.extend(block);
        }
    }
    prog.push(insn(MOV64_K, R0, 0, 0, 0));
    prog.push(insn(EXIT, 0, 0, 0, 0));
    prog
}

/// The instructions of one rule, with each mismatch jump aimed just past the block.
fn rule_block(rule: &DeviceRule) -> Option<Vec<Insn>> {
    let number = |n: Option<u32>| match n {
        None => Some(None),
        Some(n) => i32::try_from(n).ok().map(Some),
    };
    let major = number(rule.major)?;
    let minor = number(rule.minor)?;
    let mut block = Vec::new();
    match rule.kind {
        DeviceKind::All => {}
        DeviceKind::Char => block.push(insn(JNE_K, R_KIND, 0, 0, DEV_CHAR)),
        DeviceKind::Block => block.push(insn(JNE_K, R_KIND, 0, 0, DEV_BLOCK)),
    }
    let missing = !rule.access.bits() & 7;
    if missing != 0 {
        // Any access bit asked for that the rule does not grant: no match.
        block.push(insn(MOV32_X, R1, R_ACCESS, 0, 0));
        block.push(insn(AND32_K, R1, 0, 0, i32::from(missing)));
        block.push(insn(JNE_K, R1, 0, 0, 0));
    }
    if let Some(m) = major {
        block.push(insn(JNE_K, R_MAJOR, 0, 0, m));
    }
    if let Some(m) = minor {
        block.push(insn(JNE_K, R_MINOR, 0, 0, m));
    }
    block.push(insn(MOV64_K, R0, 0, 0, 1));
    block.push(insn(EXIT, 0, 0, 0, 0));
    let len = block.len();
    for (i, ins) in block.iter_mut().enumerate() {
        if ins.code == JNE_K {
            // Jumps count from the next instruction; the block has at most 8.
            ins.off = i16::try_from(len - i - 1).unwrap_or(i16::MAX);
        }
    }
    Some(block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::{allow_all, allowed, default_rules, Access};

    /// Runs `prog` as the kernel would on a device context, for the instructions
    /// [`device_program`] emits; anything else, or a jump out of the program, fails the test.
    fn run(prog: &[Insn], access_type: u32, major: u32, minor: u32) -> u64 {
        let ctx = [access_type, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..=prog.len() {
            let i = prog.get(pc).copied().expect("pc inside the program");
            let dst = usize::from(i.regs & 0x0f);
            let src = usize::from(i.regs >> 4);
            pc += 1;
            match i.code {
                LDX_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    let idx = usize::try_from(i.off / 4).expect("offset");
                    r[dst] = u64::from(ctx[idx]);
                }
                AND32_K => r[dst] = u64::from((r[dst] as u32) & (i.imm as u32)),
                RSH32_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
                MOV32_X => r[dst] = u64::from(r[src] as u32),
                MOV64_K => r[dst] = i.imm as i64 as u64,
                JNE_K => {
                    if r[dst] != i.imm as i64 as u64 {
                        pc += usize::try_from(i.off).expect("forward jump");
                    }
                }
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
        panic!("program does not terminate");
    }

    fn access_type(kind: DeviceKind, access: Access) -> u32 {
        let kind = match kind {
            DeviceKind::Block => 1,
            DeviceKind::Char => 2,
            DeviceKind::All => unreachable!("a device is char or block"),
        };
        (u32::from(access.bits()) << 16) | kind
    }

    /// The program decides exactly as the rules do, over every access combination, both
    /// kinds, and the numbers the rules name plus some they do not.
    fn agrees_with_rules(rules: &[DeviceRule]) {
        let prog = device_program(rules);
        let accesses = (1u8..=7).map(Access::from_bits);
        for access in accesses {
            for kind in [DeviceKind::Char, DeviceKind::Block] {
                for major in [0, 1, 5, 8, 10, 136, 254, 4095] {
                    for minor in [0, 1, 2, 3, 5, 7, 8, 9, 11, 200, 1 << 19] {
                        let want = allowed(rules, kind, major, minor, access);
                        let got = run(&prog, access_type(kind, access), major, minor);
                        assert_eq!(got, u64::from(want), "{kind:?} {major}:{minor} {access:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn default_program_matches_the_rules() {
        agrees_with_rules(&default_rules());
    }

    #[test]
    fn allow_all_program_matches_the_rules() {
        agrees_with_rules(&allow_all());
    }

    #[test]
    fn partial_access_and_wildcards() {
        agrees_with_rules(&[
            DeviceRule {
                kind: DeviceKind::All,
                major: Some(8),
                minor: None,
                access: Access::READ,
            },
            DeviceRule {
                kind: DeviceKind::Block,
                major: None,
                minor: Some(1),
                access: Access::WRITE | Access::MKNOD,
            },
        ]);
        agrees_with_rules(&[]);
    }

    #[test]
    fn disk_read_denied_mknod_allowed() {
        let prog = device_program(&default_rules());
        assert_eq!(
            run(&prog, access_type(DeviceKind::Block, Access::READ), 8, 0),
            0
        );
        assert_eq!(
            run(&prog, access_type(DeviceKind::Block, Access::MKNOD), 8, 0),
            1
        );
        assert_eq!(
            run(&prog, access_type(DeviceKind::Char, Access::READ), 1, 3),
            1
        );
    }

    #[test]
    fn oversized_numbers_drop_the_rule() {
        let rule = DeviceRule {
            kind: DeviceKind::Char,
            major: Some(u32::MAX),
            minor: None,
            access: Access::RWM,
        };
        assert_eq!(device_program(&[rule]), device_program(&[]));
    }
}
