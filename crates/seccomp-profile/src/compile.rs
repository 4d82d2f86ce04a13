//! Turns a [`Profile`] into the seccomp filter for one container: keeps the rules whose
//! conditions the container meets (its capabilities, the architecture, the kernel), looks
//! each name up in the architecture's syscall table, and emits a classic-BPF program that
//! checks the ABI, then finds the call by binary search on its number.

use std::collections::BTreeMap;

use crate::arch::{Arch, X32_SYSCALL_BIT};
use crate::bpf::{self, Asm, AsmError, Dest, SockFilter};
use crate::profile::{Action, ArgCond, Op, Profile, Rule, When};

/// `SECCOMP_RET_*` values.
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;

/// Offsets in `struct seccomp_data`.
pub const OFFSET_NR: u32 = 0;
pub const OFFSET_ARCH: u32 = 4;
/// `args[0]`; each argument is 8 bytes, low word first (both ABIs are little-endian).
pub const OFFSET_ARGS: u32 = 16;

/// A binary-search leaf holds at most this many calls, checked one after another.
const LEAF: usize = 4;

/// What the filter is built for.
pub struct Target<'a> {
    pub arch: Arch,
    /// Whether the container holds a capability, by name (`CAP_SYS_ADMIN`).
    pub has_cap: &'a dyn Fn(&str) -> bool,
    /// The running kernel's (major, minor), for `minKernel`; `None` if unknown.
    pub kernel: Option<(u32, u32)>,
}

/// The kernel's return value for an action.
pub fn ret(action: Action) -> u32 {
    match action {
        Action::Allow => RET_ALLOW,
        Action::Errno(e) => RET_ERRNO | u32::from(e),
        Action::KillThread => RET_KILL_THREAD,
        Action::KillProcess => RET_KILL_PROCESS,
        Action::Trap => RET_TRAP,
        Action::Log => RET_LOG,
        Action::Trace(e) => RET_TRACE | u32::from(e),
    }
}

/// EPERM, for calls made through an ABI the filter has no table for (i386, x32).
const FOREIGN_ABI: Action = Action::Errno(1);

fn cap_name(c: &str) -> String {
    let upper = c.trim().to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

fn applies(rule: &Rule, t: &Target<'_>) -> bool {
    let has = |c: &String| (t.has_cap)(&cap_name(c));
    let on_arch = |w: &When| w.arches.iter().any(|a| t.arch.is_named(a));
    let inc = &rule.includes;
    let exc = &rule.excludes;
    let new_enough = match (inc.min_kernel, t.kernel) {
        (None, _) => true,
        (Some(min), Some(k)) => k >= min,
        (Some(_), None) => false,
    };
    inc.caps.iter().all(has)
        && (inc.arches.is_empty() || on_arch(inc))
        && new_enough
        && !exc.caps.iter().any(has)
        && !on_arch(exc)
}

/// One call's rules in the order they are tried: those comparing arguments, then the first
/// without comparisons (any later one could never be reached).
type Calls = BTreeMap<u32, Vec<Tried>>;

/// A rule as the filter tries it: its argument comparisons and its action.
type Tried = (Vec<ArgCond>, Action);

fn resolve(profile: &Profile, t: &Target<'_>) -> Calls {
    let mut calls = Calls::new();
    for rule in profile.rules.iter().filter(|r| applies(r, t)) {
        // As runc: a rule whose action is the default changes nothing.
        if rule.action == profile.default_action {
            continue;
        }
        for nr in rule.names.iter().filter_map(|n| t.arch.syscall(n)) {
            calls
                .entry(nr)
                .or_default()
                .push((rule.args.clone(), rule.action));
        }
    }
    for rules in calls.values_mut() {
        let first_plain = rules.iter().position(|(args, _)| args.is_empty());
        let plain = first_plain.map(|i| rules[i].clone());
        rules.retain(|(args, _)| !args.is_empty());
        rules.extend(plain);
    }
    calls
}

/// Emits a jump to `fail` unless `cond` holds, falling through when it does.
fn condition(a: &mut Asm, c: &ArgCond, fail: bpf::Label) {
    let lo_at = OFFSET_ARGS + 8 * u32::from(c.index);
    let hi_at = lo_at + 4;
    let (hi, lo) = ((c.value >> 32) as u32, c.value as u32);
    let ok = a.label();
    let (next, to_ok, to_fail) = (Dest::Next, Dest::To(ok), Dest::To(fail));
    use bpf::{JMP_JEQ_K as JEQ, JMP_JGE_K as JGE, JMP_JGT_K as JGT};
    match c.op {
        Op::Eq => {
            a.load(hi_at);
            a.jump(JEQ, hi, next, to_fail);
            a.load(lo_at);
            a.jump(JEQ, lo, next, to_fail);
        }
        Op::Ne => {
            a.load(hi_at);
            a.jump(JEQ, hi, next, to_ok);
            a.load(lo_at);
            a.jump(JEQ, lo, to_fail, next);
        }
        Op::MaskedEq { mask } => {
            a.load(hi_at);
            a.and((mask >> 32) as u32);
            a.jump(JEQ, hi, next, to_fail);
            a.load(lo_at);
            a.and(mask as u32);
            a.jump(JEQ, lo, next, to_fail);
        }
        Op::Gt | Op::Ge => {
            a.load(hi_at);
            a.jump(JGT, hi, to_ok, next);
            a.jump(JEQ, hi, next, to_fail);
            a.load(lo_at);
            let code = if c.op == Op::Gt { JGT } else { JGE };
            a.jump(code, lo, next, to_fail);
        }
        Op::Lt | Op::Le => {
            a.load(hi_at);
            a.jump(JGT, hi, to_fail, next);
            a.jump(JEQ, hi, next, to_ok);
            a.load(lo_at);
            let code = if c.op == Op::Lt { JGE } else { JGT };
            a.jump(code, lo, to_fail, next);
        }
    }
    a.place(ok);
}

/// The code for one call: its rules in order, then the default. Always ends in a return,
/// so the accumulator (clobbered by argument loads) is never used again.
fn call_body(a: &mut Asm, rules: &[Tried], default: Action) {
    for (args, action) in rules {
        if args.is_empty() {
            a.ret(ret(*action));
            return;
        }
        let next_rule = a.label();
        for c in args {
            condition(a, c, next_rule);
        }
        a.ret(ret(*action));
        a.place(next_rule);
    }
    a.ret(ret(default));
}

/// Binary search over the sorted call numbers; the accumulator holds the call number.
fn search(a: &mut Asm, calls: &[(u32, &[Tried])], default: Action) {
    if calls.len() <= LEAF {
        for (nr, rules) in calls {
            let mut body = a.fork();
            call_body(&mut body, rules, default);
            let skip = body.label();
            if body.len() <= usize::from(u8::MAX) {
                body.place(skip);
                a.jump(bpf::JMP_JEQ_K, *nr, Dest::Next, Dest::To(skip));
                a.append(body);
            } else {
                let enter = body.label();
                body.place(skip);
                a.jump(bpf::JMP_JEQ_K, *nr, Dest::To(enter), Dest::Next);
                a.goto(skip);
                a.place(enter);
                a.append(body);
            }
        }
        a.ret(ret(default));
        return;
    }
    let mid = calls.len() / 2;
    let (low, high) = calls.split_at(mid);
    let upper = a.label();
    let lower = a.label();
    a.jump(bpf::JMP_JGE_K, high[0].0, Dest::Next, Dest::To(lower));
    a.goto(upper);
    a.place(lower);
    search(a, low, default);
    a.place(upper);
    search(a, high, default);
}

/// The filter for `profile` on `target`.
pub fn compile(profile: &Profile, target: &Target<'_>) -> Result<Vec<SockFilter>, AsmError> {
    let calls = resolve(profile, target);
    let list: Vec<(u32, &[Tried])> = calls.iter().map(|(nr, r)| (*nr, r.as_slice())).collect();
    let mut a = Asm::default();
    let native = a.label();
    a.load(OFFSET_ARCH);
    a.jump(
        bpf::JMP_JEQ_K,
        target.arch.audit(),
        Dest::To(native),
        Dest::Next,
    );
    a.ret(ret(FOREIGN_ABI));
    a.place(native);
    a.load(OFFSET_NR);
    if target.arch == Arch::X86_64 {
        let native_abi = a.label();
        a.jump(
            bpf::JMP_JGE_K,
            X32_SYSCALL_BIT,
            Dest::Next,
            Dest::To(native_abi),
        );
        a.ret(ret(FOREIGN_ABI));
        a.place(native_abi);
    }
    search(&mut a, &list, profile.default_action);
    a.finish()
}

/// Test support: evaluates a compiled filter for one call.
#[cfg(test)]
pub fn eval(prog: &[SockFilter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        let o = 16 + 8 * i;
        data[o..o + 8].copy_from_slice(&a.to_le_bytes());
    }
    bpf::run(prog, &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(arch: Arch, has_cap: &dyn Fn(&str) -> bool) -> super::Target<'_> {
        super::Target {
            arch,
            has_cap,
            kernel: Some((6, 1)),
        }
    }

    fn one(op: Op, value: u64) -> Profile {
        Profile {
            default_action: Action::Errno(1),
            rules: vec![Rule {
                args: vec![ArgCond {
                    index: 1,
                    op,
                    value,
                }],
                ..Rule::new(&["read"], Action::Allow)
            }],
        }
    }

    #[test]
    fn comparisons_are_64_bit() {
        let t = target(Arch::X86_64, &|_| false);
        let values = [
            0u64,
            1,
            5,
            0xffff_ffff,
            0x1_0000_0000,
            0x1_0000_0005,
            0x2_0000_0000,
            u64::MAX,
        ];
        for op in [Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge] {
            for v in values {
                let prog = compile(&one(op, v), &t).expect("filter");
                for x in values {
                    let want = match op {
                        Op::Eq => x == v,
                        Op::Ne => x != v,
                        Op::Lt => x < v,
                        Op::Le => x <= v,
                        Op::Gt => x > v,
                        Op::Ge => x >= v,
                        Op::MaskedEq { .. } => unreachable!(),
                    };
                    let got = eval(&prog, Arch::X86_64.audit(), 0, [0, x, 0, 0, 0, 0]);
                    assert_eq!(got == RET_ALLOW, want, "{x:#x} {op:?} {v:#x}");
                }
            }
        }
        let prog = compile(
            &one(
                Op::MaskedEq {
                    mask: 0xf_0000_00f0,
                },
                0x1_0000_0010,
            ),
            &t,
        )
        .expect("filter");
        let arch = Arch::X86_64.audit();
        assert_eq!(
            eval(&prog, arch, 0, [0, 0x1_ffff_0011, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_ne!(
            eval(&prog, arch, 0, [0, 0x2_0000_0010, 0, 0, 0, 0]),
            RET_ALLOW
        );
    }

    #[test]
    fn foreign_abis_are_refused() {
        let p = Profile {
            default_action: Action::Allow,
            rules: Vec::new(),
        };
        let prog = compile(&p, &target(Arch::X86_64, &|_| false)).expect("filter");
        let eperm = RET_ERRNO | 1;
        assert_eq!(eval(&prog, Arch::X86_64.audit(), 0, [0; 6]), RET_ALLOW);
        // i386 (AUDIT_ARCH_I386) and x32 calls.
        assert_eq!(eval(&prog, 0x4000_0003, 0, [0; 6]), eperm);
        assert_eq!(
            eval(&prog, Arch::X86_64.audit(), X32_SYSCALL_BIT, [0; 6]),
            eperm
        );
        let prog = compile(&p, &target(Arch::Aarch64, &|_| false)).expect("filter");
        assert_eq!(eval(&prog, Arch::Aarch64.audit(), 0, [0; 6]), RET_ALLOW);
        assert_eq!(eval(&prog, Arch::X86_64.audit(), 0, [0; 6]), eperm);
    }

    #[test]
    fn conditions_select_rules() {
        let mut admin_only = Rule::new(&["mount"], Action::Allow);
        admin_only.includes.caps = vec!["CAP_SYS_ADMIN".into()];
        let mut not_admin = Rule::new(&["clone3"], Action::Errno(38));
        not_admin.excludes.caps = vec!["SYS_ADMIN".into()];
        let mut x86 = Rule::new(&["mkdir"], Action::Allow);
        x86.includes.arches = vec!["amd64".into()];
        let mut new_kernel = Rule::new(&["rmdir"], Action::Allow);
        new_kernel.includes.min_kernel = Some((7, 0));
        let p = Profile {
            default_action: Action::Errno(1),
            rules: vec![admin_only, not_admin, x86, new_kernel],
        };
        let admin = |c: &str| c == "CAP_SYS_ADMIN";
        let nobody = |_: &str| false;
        let x = Arch::X86_64;
        let nr = |n| x.syscall(n).expect("known");
        let a = x.audit();
        let plain = compile(&p, &target(x, &nobody)).expect("filter");
        let strong = compile(&p, &target(x, &admin)).expect("filter");
        assert_eq!(eval(&plain, a, nr("mount"), [0; 6]), RET_ERRNO | 1);
        assert_eq!(eval(&strong, a, nr("mount"), [0; 6]), RET_ALLOW);
        assert_eq!(eval(&plain, a, nr("clone3"), [0; 6]), RET_ERRNO | 38);
        assert_eq!(eval(&strong, a, nr("clone3"), [0; 6]), RET_ERRNO | 1);
        assert_eq!(eval(&plain, a, nr("mkdir"), [0; 6]), RET_ALLOW);
        assert_eq!(eval(&plain, a, nr("rmdir"), [0; 6]), RET_ERRNO | 1);
        let arm = compile(&p, &target(Arch::Aarch64, &nobody)).expect("filter");
        let mkdirat = Arch::Aarch64.syscall("mkdirat").expect("known");
        assert_eq!(
            eval(&arm, Arch::Aarch64.audit(), mkdirat, [0; 6]),
            RET_ERRNO | 1
        );
    }

    #[test]
    fn argument_rules_come_before_plain_ones() {
        let mut eq = Rule::new(&["read"], Action::Errno(13));
        eq.args = vec![ArgCond {
            index: 0,
            op: Op::Eq,
            value: 3,
        }];
        let p = Profile {
            default_action: Action::KillProcess,
            rules: vec![
                Rule::new(&["read"], Action::Allow),
                eq,
                Rule::new(&["read"], Action::Trap),
            ],
        };
        let x = Arch::X86_64;
        let prog = compile(&p, &target(x, &|_| false)).expect("filter");
        assert_eq!(
            eval(&prog, x.audit(), 0, [3, 0, 0, 0, 0, 0]),
            RET_ERRNO | 13
        );
        assert_eq!(eval(&prog, x.audit(), 0, [4, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(eval(&prog, x.audit(), 1, [0; 6]), RET_KILL_PROCESS);
    }

    #[test]
    fn every_number_is_found_by_the_search() {
        // A rule for every known x86_64 call, each with its own errno: the binary search
        // must land on the right one for each number and on the default elsewhere.
        let x = Arch::X86_64;
        let names: Vec<String> = (0..600u32)
            .filter_map(|n| syscalls::x86_64::Sysno::new(n as usize))
            .map(|s| s.name().to_string())
            .collect();
        let rules = names
            .iter()
            .filter_map(|n| {
                let nr = x.syscall(n)?;
                Some(Rule::new(&[n.as_str()], Action::Errno(nr as u16 + 1)))
            })
            .collect();
        let p = Profile {
            default_action: Action::Allow,
            rules,
        };
        let prog = compile(&p, &target(x, &|_| false)).expect("filter");
        for n in 0..600u32 {
            let want = match syscalls::x86_64::Sysno::new(n as usize) {
                Some(_) => RET_ERRNO | (n + 1),
                None => RET_ALLOW,
            };
            assert_eq!(eval(&prog, x.audit(), n, [0; 6]), want, "{n}");
        }
    }
}
