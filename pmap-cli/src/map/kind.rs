//! What a region is: the one classifier behind `--summary`, `--names` and
//! the Solaris `-r` kinds (also for core files).
//!
//! Two sources of knowledge, kept apart because they need different inputs:
//! - [`Name`]: what the region's own name says (`[heap]`, `/memfd:x`,
//!   `/SYSV...`, a file, nothing);
//! - [`Role`]: what the region's neighbours and the process's threads show
//!   it to be (a glibc arena and its reserved tail, a thread stack and its
//!   guard, JIT code), given the facts `source` read.
//!
//! [`category`] combines both into the rows of `--summary`. Pure data: no
//! reads; the thread stack pointers and the JIT symbols come in as numbers.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use super::region::Region;

/// glibc's `HEAP_MAX_SIZE` on 64-bit: a non-main arena is a heap of this
/// size, aligned to it, committed from the bottom, the rest `PROT_NONE`.
pub const ARENA: u64 = 64 * 1024 * 1024;

/// What a region's own name says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name<'a> {
    /// `/memfd:NAME` (without ` (deleted)`): the NAME.
    Memfd(&'a [u8]),
    /// `/SYSV<key>`, the key being eight hex digits.
    Sysv(&'a [u8]),
    /// `/SYSV` with a key of another shape.
    SysvOther,
    /// `/dev/zero (deleted)` or `/dev/zero`: shared anonymous memory when
    /// mapped shared.
    DevZero,
    /// `[anon_shmem:NAME]`: named shared anonymous memory.
    AnonShmem,
    /// `[vdso]`, `[vvar]`, `[vvar_vclock]`, `[vsyscall]`, `[uprobes]`,
    /// `[sigpage]` (arm's): the kernel's special mappings (`vm_ops->name`).
    Special,
    /// `[heap]`.
    Heap,
    /// `[stack]`: the main thread's stack (`[stack:TID]`, a thread's, on
    /// kernels before 4.5).
    Stack,
    /// Another bracketed kernel name (`[anon:x]`...): the text inside.
    Kernel(&'a [u8]),
    /// A path.
    File,
    /// No name and no inode.
    Anonymous,
    /// Anything else (a name that is neither a path nor bracketed).
    Other,
}

/// Reads what `r`'s name says.
pub fn name(r: &Region) -> Name<'_> {
    let full = r.name.as_slice();
    let name = full.strip_suffix(b" (deleted)").unwrap_or(full);
    match full {
        b"[heap]" => return Name::Heap,
        b"[stack]" => return Name::Stack,
        _ if full.starts_with(b"[stack:") => return Name::Stack,
        b"[vdso]" | b"[vvar]" | b"[vvar_vclock]" | b"[vsyscall]" | b"[uprobes]" | b"[sigpage]" => {
            return Name::Special;
        }
        _ => {}
    }
    if let Some(m) = name.strip_prefix(b"/memfd:") {
        return Name::Memfd(m);
    }
    if let Some(key) = name.strip_prefix(b"/SYSV") {
        if key.len() == 8 && key.iter().all(u8::is_ascii_hexdigit) {
            return Name::Sysv(key);
        }
        return Name::SysvOther;
    }
    if name == b"/dev/zero" {
        return Name::DevZero;
    }
    if full.starts_with(b"[anon_shmem:") {
        return Name::AnonShmem;
    }
    if full.starts_with(b"/") {
        return Name::File;
    }
    if let Some(inner) = bracketed(full) {
        return Name::Kernel(inner);
    }
    if full.is_empty() && r.inode == 0 {
        return Name::Anonymous;
    }
    Name::Other
}

/// The text inside a bracketed kernel name (`[heap]`, `[anon:x]`), not
/// already spaced (`[ x ]`), ` (deleted)` left out.
pub fn bracketed(name: &[u8]) -> Option<&[u8]> {
    let name = name.strip_suffix(b" (deleted)").unwrap_or(name);
    (name.len() > 2 && name[0] == b'[' && name[name.len() - 1] == b']' && name[1] != b' ')
        .then(|| &name[1..name.len() - 1])
}

/// What a region is by its place in the map and the threads' stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A glibc malloc arena's committed bottom.
    Arena,
    /// The `PROT_NONE` rest of an arena's 64 MiB.
    ArenaReserve,
    /// The region holding thread `tid`'s stack pointer.
    ThreadStack(u32),
    /// The `PROT_NONE` region just below a thread's stack.
    StackGuard(u32),
    /// Executable anonymous memory holding this many JIT symbols.
    Jit(usize),
}

/// Roles by region start address.
pub type Roles = BTreeMap<u64, Role>;

fn is_anon(r: &Region) -> bool {
    r.name.is_empty() && r.inode == 0
}

/// The roles of `regions`, given each thread's `(tid, stack pointer)` and
/// the JIT symbols' start addresses (sorted). Where two apply, a thread's
/// stack wins over JIT code, and JIT code over an arena.
pub fn roles(regions: &[&Region], threads: &[(u32, u64)], jit_syms: &[u64]) -> Roles {
    let mut regions = regions.to_vec();
    regions.sort_by_key(|r| r.start);
    let mut out = Roles::new();
    let find = |addr: u64| {
        let i = regions.partition_point(|r| r.start <= addr);
        regions[..i].last().filter(|r| addr < r.end).copied()
    };

    // Arenas: rw-p at a 64 MiB boundary, reserve tail up to the next one.
    for (i, r) in regions.iter().enumerate() {
        if is_anon(r)
            && r.perms.as_str() == "rw-p"
            && r.start.is_multiple_of(ARENA)
            && r.size() <= ARENA
        {
            let tail = regions
                .get(i + 1)
                .filter(|t| t.start == r.end && is_anon(t) && t.perms.as_str() == "---p");
            if tail.map_or(r.end, |t| t.end) == r.start + ARENA {
                out.insert(r.start, Role::Arena);
                if let Some(t) = tail {
                    out.insert(t.start, Role::ArenaReserve);
                }
            }
        }
    }

    if !jit_syms.is_empty() {
        for r in &regions {
            if is_anon(r) && r.perms.executable() {
                let n = jit_syms.partition_point(|&s| s < r.end)
                    - jit_syms.partition_point(|&s| s < r.start);
                if n > 0 {
                    out.insert(r.start, Role::Jit(n));
                }
            }
        }
    }

    for &(tid, sp) in threads {
        let Some(stack) = find(sp) else { continue };
        out.insert(stack.start, Role::ThreadStack(tid));
        if let Some(guard) = stack.start.checked_sub(1).and_then(find)
            && guard.end == stack.start
            && is_anon(guard)
            && guard.perms.as_str() == "---p"
        {
            out.insert(guard.start, Role::StackGuard(tid));
        }
    }
    out
}

/// A row of `--summary`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// A part of a binary or library (a file with an executable mapping):
    /// its base name and which part.
    Object(String, Part),
    MappedFiles,
    SharedMemory,
    Heap,
    ThreadStacks,
    GuardReserved,
    Special,
    Anonymous,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    Code,
    Rodata,
    Data,
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Category::Object(base, part) => {
                let part = match part {
                    Part::Code => "code",
                    Part::Rodata => "rodata",
                    Part::Data => "data",
                };
                write!(f, "{base} ({part})")
            }
            Category::MappedFiles => f.write_str("mapped files"),
            Category::SharedMemory => f.write_str("shared memory"),
            Category::Heap => f.write_str("heap"),
            Category::ThreadStacks => f.write_str("thread stacks"),
            Category::GuardReserved => f.write_str("guard/reserved"),
            Category::Special => f.write_str("special"),
            Category::Anonymous => f.write_str("anonymous"),
        }
    }
}

fn base_name(name: &[u8]) -> String {
    let n = name.strip_suffix(b" (deleted)").unwrap_or(name);
    let base = n.rsplit(|&c| c == b'/').next().unwrap_or(n);
    String::from_utf8_lossy(base).into_owned()
}

/// The files with an executable mapping among `regions` (binaries and
/// libraries: their other mappings are their rodata and data).
pub fn code_files<'a>(regions: impl IntoIterator<Item = &'a Region>) -> HashSet<&'a [u8]> {
    regions
        .into_iter()
        .filter(|r| r.perms.executable() && r.name.starts_with(b"/"))
        .map(|r| r.name.as_slice())
        .collect()
}

/// The `--summary` category of `r`, given its role and the code files.
pub fn category(r: &Region, role: Option<Role>, code_files: &HashSet<&[u8]>) -> Category {
    match role {
        Some(Role::StackGuard(_) | Role::ArenaReserve) => return Category::GuardReserved,
        Some(Role::ThreadStack(_)) => return Category::ThreadStacks,
        Some(Role::Arena) => return Category::Heap,
        Some(Role::Jit(_)) | None => {}
    }
    match name(r) {
        Name::Heap => return Category::Heap,
        Name::Stack => return Category::ThreadStacks,
        Name::Special => return Category::Special,
        Name::Sysv(_) | Name::SysvOther | Name::Memfd(_) | Name::DevZero | Name::AnonShmem => {
            return Category::SharedMemory;
        }
        Name::File => {
            let name = r.name.as_slice();
            if code_files.contains(name) {
                let part = if r.perms.executable() {
                    Part::Code
                } else if r.perms.writable() {
                    Part::Data
                } else if !r.perms.readable() {
                    return Category::GuardReserved;
                } else {
                    Part::Rodata
                };
                return Category::Object(base_name(name), part);
            }
            return if r.perms.shared() {
                Category::SharedMemory
            } else {
                Category::MappedFiles
            };
        }
        Name::Kernel(_) | Name::Anonymous | Name::Other => {}
    }
    if !r.perms.readable() && !r.perms.writable() && !r.perms.executable() {
        return Category::GuardReserved;
    }
    if r.perms.shared() {
        return Category::SharedMemory;
    }
    Category::Anonymous
}

/// What a reserved (`PROT_NONE`) region is, for Solaris's `pmap -r`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserved {
    /// Just below a thread's stack.
    StackGuard,
    /// The reserved rest of a glibc arena.
    ArenaReserve,
    /// A file's (a library's gap between its segments, shared memory).
    FileGuard,
    /// A small anonymous one (64 KiB or less): a guard page or a few.
    Guard,
    /// A larger anonymous one: address space set aside.
    Reservation,
}

impl Reserved {
    pub fn as_str(self) -> &'static str {
        match self {
            Reserved::StackGuard => "stack guard",
            Reserved::ArenaReserve => "arena reserve",
            Reserved::FileGuard => "file guard",
            Reserved::Guard => "guard",
            Reserved::Reservation => "reservation",
        }
    }
}

/// The kind of the reserved region `r`, given its role.
pub fn reserved(r: &Region, role: Option<Role>) -> Reserved {
    match (role, name(r)) {
        (Some(Role::StackGuard(_)), _) => Reserved::StackGuard,
        (Some(Role::ArenaReserve), _) => Reserved::ArenaReserve,
        (_, Name::File | Name::Memfd(_) | Name::Sysv(_) | Name::SysvOther | Name::DevZero) => {
            Reserved::FileGuard
        }
        _ if r.size() <= 64 * 1024 => Reserved::Guard,
        _ => Reserved::Reservation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::region::Perms;

    fn r(name: &str, perms: &str) -> Region {
        let p = perms.as_bytes();
        Region {
            start: 0x1000,
            end: 0x3000,
            perms: Perms([p[0], p[1], p[2], p[3]]),
            name: name.as_bytes().to_vec(),
            ..Region::default()
        }
    }

    #[test]
    fn categories() {
        let libc = b"/usr/lib/libc.so.6".as_slice();
        let code: HashSet<&[u8]> = [libc].into_iter().collect();
        let c = |name: &str, perms: &str, role: Option<Role>| {
            category(&r(name, perms), role, &code).to_string()
        };
        assert_eq!(c("/usr/lib/libc.so.6", "r-xp", None), "libc.so.6 (code)");
        assert_eq!(c("/usr/lib/libc.so.6", "r--p", None), "libc.so.6 (rodata)");
        assert_eq!(c("/usr/lib/libc.so.6", "rw-p", None), "libc.so.6 (data)");
        assert_eq!(c("/usr/lib/libc.so.6", "---p", None), "guard/reserved");
        assert_eq!(c("/usr/share/locale/x", "r--p", None), "mapped files");
        assert_eq!(c("/dev/shm/x", "rw-s", None), "shared memory");
        assert_eq!(c("/memfd:a (deleted)", "rw-s", None), "shared memory");
        assert_eq!(c("/SYSV00000000 (deleted)", "rw-s", None), "shared memory");
        assert_eq!(c("[heap]", "rw-p", None), "heap");
        assert_eq!(c("", "rw-p", Some(Role::Arena)), "heap");
        assert_eq!(c("", "---p", Some(Role::ArenaReserve)), "guard/reserved");
        assert_eq!(c("", "rw-p", Some(Role::ThreadStack(5))), "thread stacks");
        assert_eq!(c("", "---p", Some(Role::StackGuard(5))), "guard/reserved");
        assert_eq!(c("", "r-xp", Some(Role::Jit(3))), "anonymous");
        assert_eq!(c("[stack]", "rw-p", None), "thread stacks");
        assert_eq!(c("[stack:42]", "rw-p", None), "thread stacks");
        assert_eq!(c("[vdso]", "r-xp", None), "special");
        assert_eq!(c("", "---p", None), "guard/reserved");
        assert_eq!(c("", "rw-p", None), "anonymous");
        assert_eq!(c("[anon:x]", "rw-p", None), "anonymous");
    }

    #[test]
    fn arenas_and_stacks() {
        let at = |start: u64, end: u64, perms: &[u8; 4]| Region {
            start,
            end,
            perms: Perms(*perms),
            ..Region::default()
        };
        let arena = at(ARENA, ARENA + 0x21000, b"rw-p");
        let tail = at(ARENA + 0x21000, 2 * ARENA, b"---p");
        let guard = at(0x7000_0000, 0x7000_1000, b"---p");
        let stack = at(0x7000_1000, 0x7080_1000, b"rw-p");
        let regions = [&stack, &tail, &guard, &arena];
        let roles = roles(&regions, &[(7, 0x7000_2000)], &[]);
        assert_eq!(roles.get(&arena.start), Some(&Role::Arena));
        assert_eq!(roles.get(&tail.start), Some(&Role::ArenaReserve));
        assert_eq!(roles.get(&stack.start), Some(&Role::ThreadStack(7)));
        assert_eq!(roles.get(&guard.start), Some(&Role::StackGuard(7)));
    }

    #[test]
    fn reserved_kinds_from_roles_then_names_then_size() {
        let mut guard = r("", "---p");
        assert_eq!(reserved(&guard, None), Reserved::Guard);
        assert_eq!(
            reserved(&guard, Some(Role::StackGuard(3))),
            Reserved::StackGuard
        );
        assert_eq!(
            reserved(&guard, Some(Role::ArenaReserve)),
            Reserved::ArenaReserve
        );
        assert_eq!(
            reserved(&r("/usr/lib/libc.so.6", "---p"), None),
            Reserved::FileGuard
        );
        guard.end = guard.start + 65 * 1024;
        assert_eq!(reserved(&guard, None), Reserved::Reservation);
    }
}
