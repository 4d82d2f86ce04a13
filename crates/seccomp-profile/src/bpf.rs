//! Classic BPF as seccomp runs it: the instruction type the kernel takes, a small assembler
//! with labels (so the compiler never counts jump offsets by hand, and a jump that does not
//! fit is an error, not a wrong program), and, for tests, an interpreter of the same subset.

/// One classic-BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// `BPF_LD | BPF_W | BPF_ABS`.
pub const LD_W_ABS: u16 = 0x20;
/// `BPF_ALU | BPF_AND | BPF_K`.
pub const ALU_AND_K: u16 = 0x54;
/// `BPF_JMP | BPF_JA`.
pub const JMP_JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
pub const JMP_JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JGT | BPF_K`.
pub const JMP_JGT_K: u16 = 0x25;
/// `BPF_JMP | BPF_JGE | BPF_K`.
pub const JMP_JGE_K: u16 = 0x35;
/// `BPF_RET | BPF_K`.
pub const RET_K: u16 = 0x06;

/// The kernel's limit on a filter's length (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

/// A program the assembler cannot encode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    #[error("the filter has {len} instructions; the kernel takes at most 4096")]
    TooLong { len: usize },
    #[error("a conditional jump of {distance} instructions does not fit in 8 bits")]
    JumpTooFar { distance: usize },
    #[error("a jump to a label that was never placed")]
    Unplaced,
}

/// A place in the program, placed once with [`Asm::place`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// Where a conditional jump goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// The next instruction.
    Next,
    To(Label),
}

#[derive(Debug, Clone, Copy)]
enum Item {
    Plain(SockFilter),
    Cond {
        code: u16,
        k: u32,
        jt: Dest,
        jf: Dest,
    },
    Always(Label),
    Place(Label),
}

/// Builds a program; [`Asm::finish`] resolves the labels.
#[derive(Debug, Default)]
pub struct Asm {
    items: Vec<Item>,
    labels: usize,
}

impl Asm {
    pub fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    pub fn place(&mut self, l: Label) {
        self.items.push(Item::Place(l));
    }

    /// Loads the 32-bit word at `offset` of `struct seccomp_data`.
    pub fn load(&mut self, offset: u32) {
        self.plain(LD_W_ABS, offset);
    }

    pub fn and(&mut self, mask: u32) {
        self.plain(ALU_AND_K, mask);
    }

    pub fn ret(&mut self, value: u32) {
        self.plain(RET_K, value);
    }

    /// A conditional jump (`JMP_JEQ_K`, `JMP_JGT_K`, `JMP_JGE_K`) on the accumulator.
    pub fn jump(&mut self, code: u16, k: u32, jt: Dest, jf: Dest) {
        self.items.push(Item::Cond { code, k, jt, jf });
    }

    /// An unconditional jump (32-bit offset, so it reaches anywhere).
    pub fn goto(&mut self, l: Label) {
        self.items.push(Item::Always(l));
    }

    fn plain(&mut self, code: u16, k: u32) {
        self.items.push(Item::Plain(SockFilter {
            code,
            jt: 0,
            jf: 0,
            k,
        }));
    }

    /// Instructions emitted so far (labels take no room).
    pub fn len(&self) -> usize {
        self.items
            .iter()
            .filter(|i| !matches!(i, Item::Place(_)))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends another program's items (its labels must come from this assembler).
    pub fn append(&mut self, other: Asm) {
        self.items.extend(other.items);
        self.labels = self.labels.max(other.labels);
    }

    /// A second assembler sharing this one's label numbering, for a block built apart and
    /// then [`append`](Asm::append)ed.
    pub fn fork(&self) -> Asm {
        Asm {
            items: Vec::new(),
            labels: self.labels,
        }
    }

    pub fn finish(self) -> Result<Vec<SockFilter>, AsmError> {
        let mut at = vec![usize::MAX; self.labels];
        let mut pc = 0usize;
        for item in &self.items {
            match item {
                Item::Place(Label(l)) => at[*l] = pc,
                _ => pc += 1,
            }
        }
        if pc > MAX_INSNS {
            return Err(AsmError::TooLong { len: pc });
        }
        // Labels only ever lie ahead of their jumps.
        let distance = |from: usize, Label(l): Label| -> Result<usize, AsmError> {
            at.get(l)
                .filter(|to| **to != usize::MAX && **to > from)
                .map(|to| to - from - 1)
                .ok_or(AsmError::Unplaced)
        };
        let offset = |from: usize, t: Dest| -> Result<u8, AsmError> {
            match t {
                Dest::Next => Ok(0),
                Dest::To(l) => {
                    let distance = distance(from, l)?;
                    u8::try_from(distance).map_err(|_| AsmError::JumpTooFar { distance })
                }
            }
        };
        let mut out = Vec::with_capacity(pc);
        for item in &self.items {
            let pc = out.len();
            match *item {
                Item::Place(_) => {}
                Item::Plain(f) => out.push(f),
                Item::Cond { code, k, jt, jf } => out.push(SockFilter {
                    code,
                    jt: offset(pc, jt)?,
                    jf: offset(pc, jf)?,
                    k,
                }),
                Item::Always(l) => out.push(SockFilter {
                    code: JMP_JA,
                    jt: 0,
                    jf: 0,
                    // At most MAX_INSNS, checked above.
                    k: u32::try_from(distance(pc, l)?)
                        .map_err(|_| AsmError::TooLong { len: pc })?,
                }),
            }
        }
        Ok(out)
    }
}

/// Runs `prog` over a `struct seccomp_data` (as bytes) the way the kernel does, for tests.
#[cfg(test)]
pub fn run(prog: &[SockFilter], data: &[u8; 64]) -> u32 {
    let mut acc = 0u32;
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        pc += 1;
        match i.code {
            LD_W_ABS => {
                let o = i.k as usize;
                acc = u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
            }
            ALU_AND_K => acc &= i.k,
            JMP_JA => pc += i.k as usize,
            RET_K => return i.k,
            code => {
                let taken = match code {
                    JMP_JEQ_K => acc == i.k,
                    JMP_JGT_K => acc > i.k,
                    JMP_JGE_K => acc >= i.k,
                    other => panic!("opcode {other:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resolve_forward() {
        let mut a = Asm::default();
        let end = a.label();
        a.load(0);
        a.jump(JMP_JEQ_K, 7, Dest::Next, Dest::To(end));
        a.ret(1);
        a.place(end);
        a.ret(2);
        let p = a.finish().expect("program");
        assert_eq!(p[1].jf, 1);
        let mut data = [0u8; 64];
        data[0] = 7;
        assert_eq!(run(&p, &data), 1);
        data[0] = 8;
        assert_eq!(run(&p, &data), 2);
    }

    #[test]
    fn unplaced_labels_are_refused() {
        let mut a = Asm::default();
        let nowhere = a.label();
        a.goto(nowhere);
        assert_eq!(a.finish(), Err(AsmError::Unplaced));
    }

    #[test]
    fn far_conditional_jumps_are_refused() {
        let mut a = Asm::default();
        let end = a.label();
        a.jump(JMP_JEQ_K, 0, Dest::To(end), Dest::Next);
        for _ in 0..300 {
            a.ret(0);
        }
        a.place(end);
        a.ret(1);
        assert_eq!(a.finish(), Err(AsmError::JumpTooFar { distance: 300 }));
    }
}
