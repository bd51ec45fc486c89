//! The processes the tests look at, and the PIDs and `-A` ranges they ask about.

use std::{ffi::OsString, path::Path, process::Command};

use crate::common::{Stopped, lines, os, stop};

pub(crate) fn with_pid(opts: &[&str], pids: &[u32]) -> Vec<OsString> {
    let mut a = os(opts);
    a.extend(pids.iter().map(|p| OsString::from(p.to_string())));
    a
}

pub(crate) fn odd_maps(dir: &Path, extra: &[&str]) -> Stopped {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_odd_maps"));
    cmd.arg(dir).args(extra);
    Stopped::start(cmd)
}

pub(crate) fn sleeper() -> Stopped {
    // `sh` prints ready then becomes `sleep`; the pid stays the same.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo ready; exec sleep 100000"]);
    let s = Stopped::start(cmd);
    // The stop may come before the exec, or before sleep set itself up:
    // let it run until it has (its heap exists), and a moment more so that
    // it sits in nanosleep.
    let cont = |ms| {
        // SAFETY: continue our own child briefly.
        unsafe { libc::kill(s.pid as i32, libc::SIGCONT) };
        std::thread::sleep(std::time::Duration::from_millis(ms));
        stop(s.pid);
    };
    for _ in 0..400 {
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", s.pid)).unwrap_or_default();
        let heap = regions(s.pid).iter().any(|r| r.2 == b"[heap]");
        if comm.trim() == "sleep" && heap {
            cont(50);
            return s;
        }
        cont(5);
    }
    panic!("sleep did not start");
}

/// `(start, end)` of every region, from the (stopped) process's maps.
pub(crate) fn regions(pid: u32) -> Vec<(u64, u64, Vec<u8>)> {
    let text = std::fs::read(format!("/proc/{pid}/maps")).expect("reading maps");
    lines(&text)
        .into_iter()
        .map(|l| {
            // start-end perms offset dev inode   name
            let mut rest = l;
            let mut fields = Vec::new();
            for _ in 0..5 {
                let sp = rest
                    .iter()
                    .position(|&c| c == b' ')
                    .expect("maps line has 6 columns");
                fields.push(&rest[..sp]);
                rest = &rest[sp + 1..];
            }
            let name = rest
                .iter()
                .position(|&c| c != b' ')
                .map_or(&[][..], |i| &rest[i..]);
            let range = String::from_utf8_lossy(fields[0]).into_owned();
            let (a, b) = range.split_once('-').expect("start-end");
            let hex = |x: &str| u64::from_str_radix(x, 16).expect("hex address");
            (hex(a), hex(b), name.to_vec())
        })
        .collect()
}

/// A `-A` range picking a few regions from the middle of the map, and a
/// single address inside one region.
pub(crate) fn ranges(pid: u32) -> Vec<String> {
    let r = regions(pid);
    assert!(r.len() > 8, "workload has too few regions to pick a range");
    let (lo, hi) = (r[r.len() / 3].0 + 0x10, r[r.len() / 2].1 - 1);
    vec![
        format!("{lo:x},{hi:x}"),
        format!("{:x}", r[2].0 + 0x1000 - 1),
        format!("{lo:x},"),
        format!(",{hi:x}"),
    ]
}
