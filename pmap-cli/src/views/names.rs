//! `--names`: labels for regions the kernel leaves unnamed or names tersely.
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
use crate::{proc::pid_dir::PidDir, region::Region};

/// New names by region start address.
pub type Labels = BTreeMap<u64, Vec<u8>>;

const ARENA: u64 = 64 * 1024 * 1024;

/// The stack pointer of each thread of the process of `proc_dir` that the
/// kernel tells.
pub fn thread_stack_pointers(proc_dir: &PidDir) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = proc_dir.read_dir("task") else {
        return out;
    };
    for ent in dir.flatten() {
        let Some(tid) = ent.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let sp = std::fs::read_to_string(ent.path().join("syscall"))
            .ok()
            .and_then(|s| {
                let f: Vec<&str> = s.split_whitespace().collect();
                // "nr args... sp pc" or "-1 sp pc"; "running" has no sp.
                (f.len() >= 3).then(|| f[f.len() - 2]).and_then(parse_hex)
            })
            .or_else(|| {
                let stat = std::fs::read_to_string(ent.path().join("stat")).ok()?;
                let rest = stat.rsplit_once(") ")?.1;
                // kstkesp is field 29; `rest` starts at field 3.
                rest.split_whitespace().nth(26)?.parse::<u64>().ok()
            })
            .filter(|&sp| sp != 0);
        if let Some(sp) = sp {
            out.push((tid, sp));
        }
    }
    out.sort_unstable();
    out
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

fn is_anon(r: &Region) -> bool {
    r.name.is_empty() && r.inode == 0
}

/// Symbol start addresses from `/tmp/perf-PID.map` (`START SIZE NAME`, hex).
fn jit_symbols(pid: u32) -> Vec<u64> {
    let Ok(text) = std::fs::read(format!("/tmp/perf-{pid}.map")) else {
        return Vec::new();
    };
    let mut v: Vec<u64> = text
        .split(|&c| c == b'\n')
        .filter_map(|l| {
            let s = std::str::from_utf8(l.split(|&c| c == b' ').next()?).ok()?;
            parse_hex(s)
        })
        .collect();
    v.sort_unstable();
    v
}

/// Computes the labels for a process's regions (sorted by address).
pub fn label(snap: &Snapshot) -> Labels {
    let regions: Vec<&Region> = snap.entries.iter().map(|e| &e.region).collect();
    let pid = snap.info.tgid;
    label_regions(
        regions,
        &thread_stack_pointers(&snap.dir),
        &jit_symbols(pid),
        true,
    )
}

/// The labels of `regions`, given each thread's stack pointer and the JIT
/// symbol addresses (sorted). Also used for core files (threads from
/// `NT_PRSTATUS`, and no inodes, so no SysV shm ids).
pub fn label_regions(
    mut regions: Vec<&Region>,
    threads: &[(u32, u64)],
    syms: &[u64],
    inodes_known: bool,
) -> Labels {
    regions.sort_by_key(|r| r.start);
    let mut labels = Labels::new();
    let find = |addr: u64| {
        let i = regions.partition_point(|r| r.start <= addr);
        regions[..i].last().filter(|r| addr < r.end).copied()
    };

    for r in &regions {
        if let Some(l) = static_label(r, inodes_known) {
            labels.insert(r.start, l);
        }
    }

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
            let ends_on_boundary = tail.map_or(r.end, |t| t.end) == r.start + ARENA;
            if ends_on_boundary {
                labels.insert(r.start, b"[ malloc arena ]".to_vec());
                if let Some(t) = tail {
                    labels.insert(t.start, b"[ malloc arena reserve ]".to_vec());
                }
            }
        }
    }

    if !syms.is_empty() {
        for r in &regions {
            if is_anon(r) && r.perms.executable() {
                let n =
                    syms.partition_point(|&s| s < r.end) - syms.partition_point(|&s| s < r.start);
                if n > 0 {
                    labels.insert(r.start, format!("[ jit: {n} symbols ]").into_bytes());
                }
            }
        }
    }

    for &(tid, sp) in threads {
        let Some(stack) = find(sp) else { continue };
        labels.insert(stack.start, format!("[ stack tid={tid} ]").into_bytes());
        if let Some(guard) = stack.start.checked_sub(1).and_then(find)
            && guard.end == stack.start
            && is_anon(guard)
            && guard.perms.as_str() == "---p"
        {
            labels.insert(
                guard.start,
                format!("[ stack guard tid={tid} ]").into_bytes(),
            );
        }
    }
    labels
}

/// Labels that follow from the region's own name.
fn static_label(r: &Region, inodes_known: bool) -> Option<Vec<u8>> {
    let name = r.name.strip_suffix(b" (deleted)").unwrap_or(&r.name);
    if let Some(m) = name.strip_prefix(b"/memfd:") {
        let mut l = b"[ memfd:".to_vec();
        l.extend_from_slice(m);
        l.extend_from_slice(b" ]");
        return Some(l);
    }
    if let Some(key) = name.strip_prefix(b"/SYSV")
        && key.len() == 8
        && key.iter().all(u8::is_ascii_hexdigit)
    {
        let key = String::from_utf8_lossy(key);
        if !inodes_known {
            return Some(format!("[ shm key=0x{key} ]").into_bytes());
        }
        return Some(format!("[ shm key=0x{key} id={} ]", r.inode).into_bytes());
    }
    if name == b"/dev/zero" && r.perms.shared() {
        return Some(b"[ shared anon ]".to_vec());
    }
    if name.len() > 2 && name[0] == b'[' && name[name.len() - 1] == b']' && name[1] != b' ' {
        let mut l = b"[ ".to_vec();
        l.extend_from_slice(&name[1..name.len() - 1]);
        l.extend_from_slice(b" ]");
        return Some(l);
    }
    None
}

/// Renames the regions that have a label.
pub fn apply(entries: &mut [crate::proc::smaps::SmapsEntry], labels: &Labels) {
    for e in entries {
        if let Some(l) = labels.get(&e.region.start) {
            e.region.name.clone_from(l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::Perms;

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
