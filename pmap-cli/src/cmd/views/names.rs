//! `--names`: labels for regions the kernel leaves unnamed or names tersely.
//! What a region is comes from the one classifier (`map::kind`, given the
//! facts `cmd::common::roles` reads); this module words the labels.
//!
//! - Thread stacks, `[ stack tid=N ]`: the region holding each thread's stack
//!   pointer, from `/proc/PID/task/TID/syscall` (the two last numbers are the
//!   stack pointer and the program counter; readable by root or the owner
//!   while the thread is not running), else `kstkesp` of `stat`. The
//!   `PROT_NONE` region just below is `[ stack guard tid=N ]`.
//! - glibc malloc arenas: an anonymous `rw-p` region starting on a 64 MiB
//!   boundary (glibc's `HEAP_MAX_SIZE` on 64-bit), followed by the `---p`
//!   rest of the 64 MiB it reserved: `[ malloc arena ]` and
//!   `[ malloc arena reserve ]`.
//! - `/memfd:NAME (deleted)` → `[ memfd:NAME ]`; `/SYSV<key> (deleted)` →
//!   `[ shm key=0x<key> id=<shmid> ]` (the inode is the shm id);
//!   `/dev/zero (deleted)` → `[ shared anon ]`.
//! - Kernel names get the spaced form: `[heap]` → `[ heap ]`, `[vdso]` →
//!   `[ vdso ]`, `[anon:x]` → `[ anon:x ]`...
//! - JIT code: executable anonymous regions holding symbols listed in
//!   `/tmp/perf-PID.map` (written by JITs for `perf`) → `[ jit: N symbols ]`.

use std::collections::BTreeMap;

use super::Snapshot;
use crate::{
    cmd::common::roles,
    map::{
        kind::{self, Name, Role, Roles},
        region::Region,
    },
};

/// New names by region start address.
pub type Labels = BTreeMap<u64, Vec<u8>>;

/// The roles of a process's regions (arenas, thread stacks, JIT code),
/// from its threads' stack pointers and its JIT symbols.
pub fn roles(snap: &Snapshot) -> Roles {
    let regions: Vec<&Region> = snap.entries.iter().map(|e| &e.region).collect();
    roles::of_process(&snap.dir, snap.info.tgid, &regions)
}

/// The labels of `regions`, given each thread's stack pointer and the JIT
/// symbol addresses (sorted). Also used for core files (threads from
/// `NT_PRSTATUS`, and no inodes, so no SysV shm ids).
pub fn label_regions(
    regions: Vec<&Region>,
    threads: &[(u32, u64)],
    syms: &[u64],
    inodes_known: bool,
) -> Labels {
    let roles = kind::roles(&regions, threads, syms);
    labels(&regions, &roles, inodes_known)
}

/// A label for each region with a role or a name worth rewriting.
pub fn labels(regions: &[&Region], roles: &Roles, inodes_known: bool) -> Labels {
    let mut labels = Labels::new();
    for r in regions {
        if let Some(l) = static_label(r, inodes_known) {
            labels.insert(r.start, l);
        }
    }
    for (&start, role) in roles {
        let l = match role {
            Role::Arena => b"[ malloc arena ]".to_vec(),
            Role::ArenaReserve => b"[ malloc arena reserve ]".to_vec(),
            Role::Jit(n) => format!("[ jit: {n} symbols ]").into_bytes(),
            Role::ThreadStack(tid) => format!("[ stack tid={tid} ]").into_bytes(),
            Role::StackGuard(tid) => format!("[ stack guard tid={tid} ]").into_bytes(),
        };
        labels.insert(start, l);
    }
    labels
}

/// Labels that follow from the region's own name.
fn static_label(r: &Region, inodes_known: bool) -> Option<Vec<u8>> {
    let spaced = |prefix: &[u8], inner: &[u8]| [b"[ ", prefix, inner, b" ]"].concat();
    match kind::name(r) {
        Name::Memfd(m) => Some(spaced(b"memfd:", m)),
        Name::Sysv(key) => {
            let key = String::from_utf8_lossy(key);
            if !inodes_known {
                return Some(format!("[ shm key=0x{key} ]").into_bytes());
            }
            Some(format!("[ shm key=0x{key} id={} ]", r.inode).into_bytes())
        }
        Name::DevZero if r.perms.shared() => Some(b"[ shared anon ]".to_vec()),
        _ => kind::bracketed(&r.name).map(|inner| spaced(b"", inner)),
    }
}

/// Renames the regions that have a label.
pub fn apply(entries: &mut [crate::map::smaps::SmapsEntry], labels: &Labels) {
    for e in entries {
        if let Some(l) = labels.get(&e.region.start) {
            e.region.name.clone_from(l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::region::Perms;

    fn region(name: &str, perms: &str, inode: u64) -> Region {
        let p = perms.as_bytes();
        Region {
            start: 0x1000,
            end: 0x2000,
            perms: Perms([p[0], p[1], p[2], p[3]]),
            inode,
            name: name.as_bytes().to_vec(),
            ..Region::default()
        }
    }

    #[test]
    fn static_labels() {
        let l = |n: &str, p: &str, i: u64| {
            static_label(&region(n, p, i), true).map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        assert_eq!(
            l("/memfd:jit (deleted)", "rw-s", 5).as_deref(),
            Some("[ memfd:jit ]")
        );
        assert_eq!(
            l("/SYSV0000abcd (deleted)", "rw-s", 42).as_deref(),
            Some("[ shm key=0x0000abcd id=42 ]")
        );
        assert_eq!(l("[heap]", "rw-p", 0).as_deref(), Some("[ heap ]"));
        assert_eq!(l("[anon:x y]", "rw-p", 0).as_deref(), Some("[ anon:x y ]"));
        assert_eq!(
            l("/dev/zero (deleted)", "rw-s", 3).as_deref(),
            Some("[ shared anon ]")
        );
        assert_eq!(l("/usr/lib/libc.so.6", "r-xp", 9), None);
        assert_eq!(l("", "rw-p", 0), None);
    }
}
