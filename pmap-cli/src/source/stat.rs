//! `/proc/PID/stat` (and `task/TID/stat`): the one parser of it.
//!
//! The command name (field 2) sits between the first '(' and the last ')'
//! and may hold blanks and parentheses, so the other fields are counted
//! from that last ')'. Fields are numbered as in proc(5): 3 is the state.

/// One `stat` line, split into fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat<'a> {
    comm: &'a [u8],
    /// Fields 3 onwards.
    rest: Vec<&'a [u8]>,
}

impl<'a> Stat<'a> {
    /// Splits a `stat` line; `None` without the parentheses of the name.
    pub fn parse(raw: &'a [u8]) -> Option<Stat<'a>> {
        let close = crate::sys::bytes::rfind(b')', raw)?;
        let open = crate::sys::bytes::find(b'(', &raw[..close])?;
        let rest = raw[close + 1..]
            .split(|c| c.is_ascii_whitespace())
            .filter(|f| !f.is_empty())
            .collect();
        Some(Stat {
            comm: &raw[open + 1..close],
            rest,
        })
    }

    /// Field 2, the command name, without its parentheses.
    pub fn comm(&self) -> &'a [u8] {
        self.comm
    }

    /// Field 3: 'R', 'S', ... 'Z' (zombie), 'X' (dead).
    pub fn state(&self) -> Option<u8> {
        self.field(3)?.first().copied()
    }

    /// Field `n` (from 3) as text.
    pub fn field(&self, n: usize) -> Option<&'a [u8]> {
        self.rest.get(n.checked_sub(3)?).copied()
    }

    /// Field `n` (from 3) as a number.
    pub fn num(&self, n: usize) -> Option<u64> {
        std::str::from_utf8(self.field(n)?).ok()?.parse().ok()
    }
}

/// `PF_EXITING` and `PF_KTHREAD` in the flags field of `stat`.
const PF_EXITING: u64 = 0x0000_0004;
const PF_KTHREAD: u64 = 0x0020_0000;

/// Fields of `/proc/PID/stat` used to judge a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFacts {
    /// 'R', 'S', ... 'Z' (zombie), 'X' (dead).
    pub state: u8,
    /// The parent process.
    pub ppid: u32,
    /// Exiting: set before the address space is released, while the
    /// state still says running (a large map takes a while to free).
    pub exiting: bool,
    /// Kernel thread: no address space, an empty map is its whole map.
    pub kernel_thread: bool,
    /// Clock ticks after boot: with the id, names one process for good.
    pub start_time: u64,
    /// `startcode`: 0 while an execve is still loading the new program
    /// (see [`StatFacts::loading_program`]).
    pub start_code: u64,
    /// `startstack`: changes with execve (a new stack, randomly placed).
    pub start_stack: u64,
    /// `start_brk`: where the heap begins (0 where the kernel hides it).
    pub start_brk: u64,
}

impl StatFacts {
    /// The facts of a `stat` line; `None` if a field they need is missing.
    pub fn parse(raw: &[u8]) -> Option<StatFacts> {
        let stat = Stat::parse(raw)?;
        let flags = stat.num(9)?;
        Some(StatFacts {
            state: stat.state()?,
            ppid: u32::try_from(stat.num(4)?).ok()?,
            exiting: flags & PF_EXITING != 0,
            kernel_thread: flags & PF_KTHREAD != 0,
            start_time: stat.num(22)?,
            start_code: stat.num(26)?,
            start_stack: stat.num(28)?,
            // Field 47 is in kernels since 3.3.
            start_brk: stat.num(47).unwrap_or(0),
        })
    }

    /// A zombie (or a dead process): `pmap` shows it with an empty map.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, b'Z' | b'X')
    }

    /// A zombie, dead or exiting process has (or soon has) no address
    /// space any more.
    pub fn is_dead(&self) -> bool {
        self.exiting || matches!(self.state, b'Z' | b'X')
    }

    /// An execve is still loading the new program: the process already has
    /// its new address space (its map is the new stack alone, then the new
    /// stack and what is mapped of the program so far), but not the whole
    /// of it. The kernel sets `startcode` (with the final `startstack`) once
    /// the program, its interpreter and the vDSO are all mapped, at the end
    /// of `load_elf_binary`; until then it is 0 (a new `mm` starts zeroed),
    /// while `startstack` is 0 and then, from `setup_arg_pages`, a value
    /// that changes again at that end. A live user process shows a nonzero
    /// `startcode` otherwise (1 where the kernel hides it from us).
    pub fn loading_program(&self) -> bool {
        !self.kernel_thread && !self.is_dead() && self.start_code == 0
    }

    /// Whether `after`, read later, shows the same program as this, whole:
    /// the same start of stack, and no execve loading one at either moment
    /// (the start of the stack is 0, then a temporary value, while the
    /// kernel maps the new program, so equal values then do not mean a
    /// whole map). A map read between the two is then one program's.
    pub fn same_whole_program(&self, after: &StatFacts) -> bool {
        !self.loading_program() && !after.loading_program() && self.start_stack == after.start_stack
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_count_from_the_last_parenthesis() {
        let s = Stat::parse(b"9 (a) b) (c) R 1 2\n").expect("parses");
        assert_eq!(s.comm(), b"a) b) (c");
        assert_eq!(s.state(), Some(b'R'));
        assert_eq!(s.num(4), Some(1));
        assert_eq!(s.num(6), None);
        assert_eq!(Stat::parse(b"no parentheses"), None);
    }

    #[test]
    fn stat_fields() {
        let line = b"123 (a (b) c) S 1 2 3 4 5 2097216 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 140737 26\n";
        let s = StatFacts::parse(line).expect("parses");
        assert_eq!(s.state, b'S');
        assert!(s.kernel_thread && !s.exiting);
        assert_eq!(s.start_time, 19);
        assert_eq!(s.start_stack, 140737);
        assert_eq!(s.start_code, 23);
        assert!(!s.is_dead() && !s.loading_program());
        assert_eq!(StatFacts::parse(b"1 (x) Z 1"), None);
    }

    #[test]
    fn a_program_still_being_loaded() {
        // startcode (26) 0, startstack (28) 0: execve's new address space
        // before setup_arg_pages.
        let line =
            b"7 (x) R 1 2 3 4 5 4194560 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 0 0 0 0 26\n";
        let s = StatFacts::parse(line).expect("parses");
        assert!(s.loading_program());
        // The same with the temporary start of the stack.
        let line = b"7 (x) R 1 2 3 4 5 4194560 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 0 0 0 140737 26\n";
        let s = StatFacts::parse(line).expect("parses");
        assert_eq!((s.start_code, s.start_stack), (0, 140737));
        assert!(s.loading_program());
        // A zombie, an exiting process and a kernel thread show no address
        // space: 0 is their startcode for good.
        let zombie =
            b"7 (x) Z 1 2 3 4 5 4194560 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 0 0 0 0 26\n";
        assert!(!StatFacts::parse(zombie).expect("parses").loading_program());
        let exiting =
            b"7 (x) R 1 2 3 4 5 4194564 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 0 0 0 0 26\n";
        assert!(!StatFacts::parse(exiting).expect("parses").loading_program());
        let kthread =
            b"7 (x) S 2 2 3 4 5 2097216 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 0 0 0 0 26\n";
        assert!(!StatFacts::parse(kthread).expect("parses").loading_program());
    }
}
