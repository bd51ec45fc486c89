//! What each traced syscall means: its name, how to show its arguments, and
//! which address ranges it may have changed (to ask the kernel about).

use std::fmt::{self, Write as _};

use pmap_common::Event;

/// A traced syscall, by its x86_64 number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Call {
    Mmap,
    Munmap,
    Mprotect,
    PkeyMprotect,
    Brk,
    Mremap,
    Madvise,
    Shmat,
    Shmdt,
    Mseal,
    Mlock,
    Mlock2,
    Munlock,
    Mlockall,
    Munlockall,
    Mbind,
    RemapFilePages,
}

impl Call {
    /// Every traced call, in the order `--help` lists them.
    pub const ALL: [Call; 17] = [
        Call::Mmap,
        Call::Munmap,
        Call::Mprotect,
        Call::PkeyMprotect,
        Call::Brk,
        Call::Mremap,
        Call::Madvise,
        Call::Shmat,
        Call::Shmdt,
        Call::Mseal,
        Call::Mlock,
        Call::Mlock2,
        Call::Munlock,
        Call::Mlockall,
        Call::Munlockall,
        Call::Mbind,
        Call::RemapFilePages,
    ];

    /// The call named `name` (as [`Call::name`] spells it).
    pub fn from_name(name: &str) -> Option<Call> {
        Call::ALL.into_iter().find(|c| c.name() == name)
    }

    pub fn from_nr(nr: u32) -> Option<Call> {
        Some(match nr as i64 {
            libc::SYS_mmap => Call::Mmap,
            libc::SYS_munmap => Call::Munmap,
            libc::SYS_mprotect => Call::Mprotect,
            libc::SYS_pkey_mprotect => Call::PkeyMprotect,
            libc::SYS_brk => Call::Brk,
            libc::SYS_mremap => Call::Mremap,
            libc::SYS_madvise => Call::Madvise,
            libc::SYS_shmat => Call::Shmat,
            libc::SYS_shmdt => Call::Shmdt,
            462 => Call::Mseal,
            libc::SYS_mlock => Call::Mlock,
            libc::SYS_mlock2 => Call::Mlock2,
            libc::SYS_munlock => Call::Munlock,
            libc::SYS_mlockall => Call::Mlockall,
            libc::SYS_munlockall => Call::Munlockall,
            libc::SYS_mbind => Call::Mbind,
            libc::SYS_remap_file_pages => Call::RemapFilePages,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Call::Mmap => "mmap",
            Call::Munmap => "munmap",
            Call::Mprotect => "mprotect",
            Call::PkeyMprotect => "pkey_mprotect",
            Call::Brk => "brk",
            Call::Mremap => "mremap",
            Call::Madvise => "madvise",
            Call::Shmat => "shmat",
            Call::Shmdt => "shmdt",
            Call::Mseal => "mseal",
            Call::Mlock => "mlock",
            Call::Mlock2 => "mlock2",
            Call::Munlock => "munlock",
            Call::Mlockall => "mlockall",
            Call::Munlockall => "munlockall",
            Call::Mbind => "mbind",
            Call::RemapFilePages => "remap_file_pages",
        }
    }

    /// How many of the six raw arguments the syscall takes.
    pub fn arity(self) -> usize {
        match self {
            Call::Munlockall => 0,
            Call::Brk | Call::Shmdt | Call::Mlockall => 1,
            Call::Munmap | Call::Mlock | Call::Munlock => 2,
            Call::Mprotect | Call::Madvise | Call::Shmat | Call::Mseal | Call::Mlock2 => 3,
            Call::PkeyMprotect => 4,
            Call::Mremap | Call::RemapFilePages => 5,
            Call::Mmap | Call::Mbind => 6,
        }
    }

    /// Calls that create, remove, move or re-protect regions (as opposed
    /// to advice and locking, which are frequent and usually change nothing
    /// visible).
    pub fn maps_or_unmaps(self) -> bool {
        matches!(
            self,
            Call::Mmap
                | Call::Munmap
                | Call::Mremap
                | Call::Mprotect
                | Call::PkeyMprotect
                | Call::Shmat
                | Call::Shmdt
        )
    }

    /// Calls whose success value is an address.
    fn returns_address(self) -> bool {
        matches!(self, Call::Mmap | Call::Mremap | Call::Brk | Call::Shmat)
    }
}

/// The part of the address space a call may have changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Affected {
    /// Nothing (e.g. `brk(0)`, a failed mmap without MAP_FIXED).
    Nothing,
    /// These ranges, `[lo, hi)`.
    Ranges(Vec<(u64, u64)>),
    /// Possibly every region (mlockall): re-read everything.
    All,
}

/// Whether mmap flags ask for a shared mapping. The mapping type is a
/// two-bit field (MAP_SHARED 1, MAP_PRIVATE 2, MAP_SHARED_VALIDATE 3), not
/// independent bits: testing it with `&` would take private for shared.
pub fn map_shared(flags: u64) -> bool {
    let kind = flags & libc::MAP_TYPE as u64;
    kind == libc::MAP_SHARED as u64 || kind == libc::MAP_SHARED_VALIDATE as u64
}

fn page_up(len: u64) -> u64 {
    len.saturating_add(4095) & !4095
}

fn span(addr: u64, len: u64) -> (u64, u64) {
    (addr, addr.saturating_add(page_up(len).max(1)))
}

/// Where `ev` (a syscall event) may have changed the map. `heap` is the
/// current `[heap]` extent or the program break's start, for brk.
pub fn affected(call: Call, ev: &Event, heap: (u64, u64)) -> Affected {
    let a = &ev.args;
    let ok = ev.ret >= 0;
    if !ok && failure_changes_nothing(call, ev) {
        return Affected::Nothing;
    }
    // A failed call can still have changed part of its range (mprotect
    // and madvise stop at the first error; MAP_FIXED unmaps first), so
    // failures re-read the range too unless nothing can have happened.
    match call {
        Call::Mmap => {
            if ok {
                Affected::Ranges(vec![span(ev.ret as u64, a[1])])
            } else if a[3] & (libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE) as u64 != 0 {
                Affected::Ranges(vec![span(a[0], a[1])])
            } else {
                Affected::Nothing
            }
        }
        Call::Munmap
        | Call::Mprotect
        | Call::PkeyMprotect
        | Call::Madvise
        | Call::Mseal
        | Call::Mlock
        | Call::Mlock2
        | Call::Munlock
        | Call::Mbind
        | Call::RemapFilePages => Affected::Ranges(vec![span(a[0], a[1])]),
        Call::Brk => {
            let new = ev.ret as u64;
            if a[0] == 0 || new == 0 {
                return Affected::Nothing;
            }
            let (lo, hi) = heap;
            Affected::Ranges(vec![(lo.min(new), hi.max(new).max(lo + 1))])
        }
        Call::Mremap => {
            let mut v = vec![span(a[0], a[1])];
            if ok {
                v.push(span(ev.ret as u64, a[2]));
            }
            Affected::Ranges(v)
        }
        Call::Shmat => {
            if ok {
                Affected::Ranges(vec![span(ev.ret as u64, 1)])
            } else {
                Affected::Nothing
            }
        }
        Call::Shmdt => Affected::Ranges(vec![span(a[0], 1)]),
        Call::Mlockall | Call::Munlockall => Affected::All,
    }
}

/// Whether a call that failed with this errno cannot have changed the map:
/// the kernel checks these conditions before it touches any region. Other
/// failures (ENOMEM, EAGAIN, ...) can come half-way (mprotect stops at the
/// first region it cannot change; MAP_FIXED unmaps before it maps).
fn failure_changes_nothing(call: Call, ev: &Event) -> bool {
    let errno = (-ev.ret) as i32;
    let early = matches!(
        errno,
        libc::EINVAL
            | libc::EBADF
            | libc::EACCES
            | libc::EPERM
            | libc::EEXIST
            | libc::ENODEV
            | libc::ETXTBSY
            | libc::EOVERFLOW
            | libc::EIDRM
    );
    match call {
        // Since 6.17 a move of several regions without a resize may fail
        // (EFAULT) after moving some of them; with a resize the old range
        // is checked before anything moves.
        Call::Mremap => {
            let resized = ev.args[1] != ev.args[2];
            early || (errno == libc::EFAULT && resized)
        }
        // mprotect and madvise go region by region: EACCES or EPERM on a
        // later region leaves the earlier ones changed.
        Call::Mprotect | Call::PkeyMprotect | Call::Madvise => errno == libc::EINVAL,
        _ => early,
    }
}

/// `rw-`: the PROT_* bits of an argument.
struct Prot(u64);

impl fmt::Display for Prot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bit = |b: i32, c: char| if self.0 & b as u64 != 0 { c } else { '-' };
        f.write_char(bit(libc::PROT_READ, 'r'))?;
        f.write_char(bit(libc::PROT_WRITE, 'w'))?;
        f.write_char(bit(libc::PROT_EXEC, 'x'))
    }
}

/// `PRIVATE|ANONYMOUS`: the MAP_* bits of an argument.
struct MapFlags(u64);

impl fmt::Display for MapFlags {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let f = self.0;
        const NAMES: &[(i32, &str)] = &[
            (libc::MAP_SHARED, "SHARED"),
            (libc::MAP_PRIVATE, "PRIVATE"),
            (
                libc::MAP_SHARED_VALIDATE & !libc::MAP_SHARED & !libc::MAP_PRIVATE,
                "SHARED_VALIDATE",
            ),
            (libc::MAP_FIXED, "FIXED"),
            (libc::MAP_ANONYMOUS, "ANONYMOUS"),
            (libc::MAP_GROWSDOWN, "GROWSDOWN"),
            (libc::MAP_DENYWRITE, "DENYWRITE"),
            (libc::MAP_EXECUTABLE, "EXECUTABLE"),
            (libc::MAP_LOCKED, "LOCKED"),
            (libc::MAP_NORESERVE, "NORESERVE"),
            (libc::MAP_POPULATE, "POPULATE"),
            (libc::MAP_NONBLOCK, "NONBLOCK"),
            (libc::MAP_STACK, "STACK"),
            (libc::MAP_HUGETLB, "HUGETLB"),
            (libc::MAP_SYNC, "SYNC"),
            (libc::MAP_FIXED_NOREPLACE, "FIXED_NOREPLACE"),
        ];
        let mut rest = f;
        let mut sep = "";
        for &(bit, name) in NAMES {
            let bit = bit as u64;
            if bit != 0 && f & bit == bit {
                write!(out, "{sep}{name}")?;
                sep = "|";
                rest &= !bit;
            }
        }
        if rest != 0 {
            write!(out, "{sep}{rest:#x}")?;
        } else if sep.is_empty() {
            out.write_char('0')?;
        }
        Ok(())
    }
}

fn advice(a: u64) -> String {
    let name = match a as i32 {
        libc::MADV_NORMAL => "NORMAL",
        libc::MADV_RANDOM => "RANDOM",
        libc::MADV_SEQUENTIAL => "SEQUENTIAL",
        libc::MADV_WILLNEED => "WILLNEED",
        libc::MADV_DONTNEED => "DONTNEED",
        libc::MADV_FREE => "FREE",
        libc::MADV_REMOVE => "REMOVE",
        libc::MADV_DONTFORK => "DONTFORK",
        libc::MADV_DOFORK => "DOFORK",
        libc::MADV_MERGEABLE => "MERGEABLE",
        libc::MADV_UNMERGEABLE => "UNMERGEABLE",
        libc::MADV_HUGEPAGE => "HUGEPAGE",
        libc::MADV_NOHUGEPAGE => "NOHUGEPAGE",
        libc::MADV_DONTDUMP => "DONTDUMP",
        libc::MADV_DODUMP => "DODUMP",
        libc::MADV_WIPEONFORK => "WIPEONFORK",
        libc::MADV_KEEPONFORK => "KEEPONFORK",
        libc::MADV_COLD => "COLD",
        libc::MADV_PAGEOUT => "PAGEOUT",
        libc::MADV_POPULATE_READ => "POPULATE_READ",
        libc::MADV_POPULATE_WRITE => "POPULATE_WRITE",
        libc::MADV_HWPOISON => "HWPOISON",
        _ => return a.to_string(),
    };
    format!("MADV_{name}")
}

/// An address argument: `NULL` or hex.
struct HexOrNull(u64);

impl fmt::Display for HexOrNull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            f.write_str("NULL")
        } else {
            write!(f, "{:#x}", self.0)
        }
    }
}

/// `mmap(NULL, 16384, rw-, PRIVATE|ANONYMOUS, -1, 0) = 0x7f...`: a call,
/// its arguments and result, written straight to the output (the tracer
/// writes one per delta).
pub struct CallText<'a>(pub Call, pub &'a Event);

impl fmt::Display for CallText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (call, ev) = (self.0, self.1);
        let a = &ev.args;
        write!(f, "{}(", call.name())?;
        match call {
            Call::Mmap => write!(
                f,
                "{}, {}, {}, {}, {}, {:#x}",
                HexOrNull(a[0]),
                a[1],
                Prot(a[2]),
                MapFlags(a[3]),
                a[4] as i32,
                a[5]
            ),
            Call::Munmap | Call::Mlock | Call::Munlock => write!(f, "{:#x}, {}", a[0], a[1]),
            Call::Mprotect => write!(f, "{:#x}, {}, {}", a[0], a[1], Prot(a[2])),
            Call::PkeyMprotect => {
                write!(f, "{:#x}, {}, {}, {}", a[0], a[1], Prot(a[2]), a[3] as i32)
            }
            Call::Brk => write!(f, "{}", HexOrNull(a[0])),
            Call::Mremap => write!(
                f,
                "{:#x}, {}, {}, {}, {}",
                a[0],
                a[1],
                a[2],
                mremap_flags(a[3]),
                HexOrNull(a[4])
            ),
            Call::Madvise => write!(f, "{:#x}, {}, {}", a[0], a[1], advice(a[2])),
            Call::Shmat => write!(f, "{}, {}, {:#o}", a[0] as i32, HexOrNull(a[1]), a[2]),
            Call::Shmdt => write!(f, "{:#x}", a[0]),
            Call::Mseal | Call::Mlock2 => write!(f, "{:#x}, {}, {:#x}", a[0], a[1], a[2]),
            Call::Mlockall => write!(f, "{:#x}", a[0]),
            Call::Munlockall => Ok(()),
            Call::Mbind => write!(f, "{:#x}, {}, {}, ...", a[0], a[1], a[2]),
            Call::RemapFilePages => {
                write!(f, "{:#x}, {}, {}, {}, {:#x}", a[0], a[1], a[2], a[3], a[4])
            }
        }?;
        f.write_str(") = ")?;
        if ev.ret < 0 {
            write!(f, "-1 {}", errno_name(-ev.ret))
        } else if call.returns_address() {
            write!(f, "{:#x}", ev.ret)
        } else {
            write!(f, "{}", ev.ret)
        }
    }
}

/// [`CallText`] as a string.
pub fn describe_call(call: Call, ev: &Event) -> String {
    CallText(call, ev).to_string()
}

fn mremap_flags(f: u64) -> String {
    let mut parts = Vec::new();
    if f & libc::MREMAP_MAYMOVE as u64 != 0 {
        parts.push("MAYMOVE");
    }
    if f & libc::MREMAP_FIXED as u64 != 0 {
        parts.push("FIXED");
    }
    if f & 4 != 0 {
        parts.push("DONTUNMAP");
    }
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join("|")
    }
}

/// The symbolic name of an errno value, e.g. `ENOMEM`.
pub fn errno_name(e: i64) -> String {
    let name = match e as i32 {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EIDRM => "EIDRM",
        libc::ENOSYS => "ENOSYS",
        libc::ENXIO => "ENXIO",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => return format!("errno {e}"),
    };
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(nr: i64, args: [u64; 6], ret: i64) -> Event {
        Event {
            args,
            ret,
            kind: nr as u32,
            ..Event::default()
        }
    }

    #[test]
    fn mapping_type_is_a_field_not_bits() {
        assert!(map_shared(libc::MAP_SHARED as u64));
        assert!(map_shared(libc::MAP_SHARED_VALIDATE as u64));
        assert!(!map_shared(
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64
        ));
    }

    #[test]
    fn mmap_is_described_like_strace() {
        let e = ev(
            libc::SYS_mmap,
            [
                0,
                16384,
                3,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
            0x7f00_0000_0000,
        );
        let call = Call::from_nr(e.kind).expect("mmap is traced");
        assert_eq!(
            describe_call(call, &e),
            "mmap(NULL, 16384, rw-, PRIVATE|ANONYMOUS, -1, 0x0) = 0x7f0000000000"
        );
        assert_eq!(
            affected(call, &e, (0, 0)),
            Affected::Ranges(vec![(0x7f00_0000_0000, 0x7f00_0000_4000)])
        );
    }

    #[test]
    fn failures_name_the_errno_and_fixed_failures_are_rechecked() {
        let flags = (libc::MAP_PRIVATE | libc::MAP_FIXED) as u64;
        let e = ev(
            libc::SYS_mmap,
            [0x1000, 100, 1, flags, 3, 0],
            -(libc::ENOMEM as i64),
        );
        let call = Call::Mmap;
        assert!(describe_call(call, &e).ends_with("= -1 ENOMEM"));
        assert_eq!(
            affected(call, &e, (0, 0)),
            Affected::Ranges(vec![(0x1000, 0x2000)])
        );
        let e = ev(libc::SYS_mmap, [0, 100, 1, 2, 3, 0], -(libc::ENOMEM as i64));
        assert_eq!(affected(call, &e, (0, 0)), Affected::Nothing);
        // MAP_FIXED_NOREPLACE refused: nothing was touched.
        let noreplace = (libc::MAP_PRIVATE | libc::MAP_FIXED_NOREPLACE) as u64;
        let e = ev(
            libc::SYS_mmap,
            [0x1000, 100, 1, noreplace, 3, 0],
            -(libc::EEXIST as i64),
        );
        assert_eq!(affected(call, &e, (0, 0)), Affected::Nothing);
        // An mprotect that fails half-way is re-read.
        let e = ev(
            libc::SYS_mprotect,
            [0x1000, 8192, 1, 0, 0, 0],
            -(libc::EACCES as i64),
        );
        assert_eq!(
            affected(Call::Mprotect, &e, (0, 0)),
            Affected::Ranges(vec![(0x1000, 0x3000)])
        );
    }

    #[test]
    fn brk_covers_old_and_new_break() {
        let e = ev(libc::SYS_brk, [0x5000_0000, 0, 0, 0, 0, 0], 0x5000_0000);
        assert_eq!(
            affected(Call::Brk, &e, (0x4000_0000, 0x4800_0000)),
            Affected::Ranges(vec![(0x4000_0000, 0x5000_0000)])
        );
        let query = ev(libc::SYS_brk, [0; 6], 0x5000_0000);
        assert_eq!(affected(Call::Brk, &query, (1, 2)), Affected::Nothing);
    }

    #[test]
    fn every_traced_tracepoint_has_a_call() {
        for nr in [
            libc::SYS_mmap,
            libc::SYS_munmap,
            libc::SYS_mprotect,
            libc::SYS_pkey_mprotect,
            libc::SYS_brk,
            libc::SYS_mremap,
            libc::SYS_madvise,
            libc::SYS_shmat,
            libc::SYS_shmdt,
            462,
            libc::SYS_mlock,
            libc::SYS_mlock2,
            libc::SYS_munlock,
            libc::SYS_mlockall,
            libc::SYS_munlockall,
            libc::SYS_mbind,
            libc::SYS_remap_file_pages,
        ] {
            let call = Call::from_nr(nr as u32).expect("known");
            assert!(crate::source::kernel::probes::syscalls().any(|s| s == call.name()));
            // The kernel's number and ours agree.
            assert!(
                pmap_common::counters::SYSCALLS
                    .iter()
                    .any(|&(n, s)| s == call.name() && i64::from(n) == nr)
            );
        }
        assert_eq!(
            crate::source::kernel::probes::syscalls().count(),
            Call::ALL.len()
        );
    }
}
