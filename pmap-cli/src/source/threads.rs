//! Where each thread's stack is: the stack pointer the kernel tells, for
//! `--names`, `--summary` and `-r` to find the thread stacks.

use super::{pid_dir::PidDir, stat::Stat};

/// The stack pointer of each thread of the process of `proc_dir` that the
/// kernel tells: from `task/TID/syscall` (the two last numbers are the
/// stack pointer and the program counter; readable by root or the owner
/// while the thread is not running), else `kstkesp` of `task/TID/stat`.
pub fn stack_pointers(proc_dir: &PidDir) -> Vec<(u32, u64)> {
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
                let raw = std::fs::read(ent.path().join("stat")).ok()?;
                // kstkesp is field 29.
                Stat::parse(&raw)?.num(29)
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
