//! What `pmap trace` shows to whom, and what it does without privileges.
//!
//! Run as root (the tests switch to `nobody` with setpriv for the parts
//! that need an unprivileged user).

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use pmap_tests::pmap_bin;

const NOBODY: [&str; 3] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];

fn as_nobody(prog: &Path) -> Command {
    let mut c = Command::new(pmap_tests::tool("setpriv", "util-linux"));
    c.args(NOBODY).arg(prog);
    c
}

/// A python process owned by `nobody` that maps and unmaps memory for a
/// while; returns it and its pid (python prints it first).
fn nobody_mapper() -> (Child, u32) {
    let mut child = Command::new(pmap_tests::tool("setpriv", "util-linux"))
        .args(NOBODY)
        .arg(pmap_tests::program("python3", "python3"))
        .arg("-c")
        .arg(
            "import mmap, os, sys, time\n\
             print(os.getpid(), flush=True)\n\
             for i in range(100):\n    m = mmap.mmap(-1, 4096 * (1 + i % 5)); time.sleep(0.05); m.close()\n",
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs as nobody");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("pid line");
    let pid = line.trim().parse().expect("python printed its pid");
    (child, pid)
}

/// A copy of pmap in a directory nobody can reach, with file capabilities.
fn capable_copy(caps: &str) -> (tempdir::Dir, PathBuf) {
    let dir = tempdir::Dir::new();
    let bin = dir.path().join("pmap");
    std::fs::copy(pmap_bin(), &bin).expect("copy pmap");
    if !caps.is_empty() {
        let st = Command::new(pmap_tests::tool("setcap", "libcap2-bin"))
            .arg(caps)
            .arg(&bin)
            .status()
            .expect("setcap runs (Debian package libcap2-bin)");
        assert!(st.success(), "setcap {caps} failed");
    }
    (dir, bin)
}

mod tempdir {
    use std::{os::unix::fs::PermissionsExt, path::PathBuf};

    /// A world-readable temporary directory, removed on drop.
    pub struct Dir(PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir().join(format!(
                "pmap-sec-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("mkdir");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            Dir(p)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn ensure_tracefs() {
    if !Path::new("/sys/kernel/tracing/events").is_dir() {
        let _ = Command::new("mount")
            .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
            .status();
    }
}

/// Every capability set (effective, permitted, inheritable, ambient) of
/// every thread of `pid` that is not empty: capabilities belong to threads,
/// and a set left in one of them would still be usable.
fn caps_left(pid: u32) -> Vec<String> {
    let mut left = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("task dir");
    for t in tasks {
        let tid = t.expect("task entry").file_name();
        let tid = tid.to_string_lossy();
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")) else {
            continue; // the thread ended
        };
        for set in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
            let v = status
                .lines()
                .find_map(|l| l.strip_prefix(set))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
                .unwrap_or_else(|| panic!("no {set} line for thread {tid}"));
            if v != 0 {
                left.push(format!("thread {tid} {set} {v:#x}"));
            }
        }
    }
    left
}

/// Waits (bounded) until `path` holds `needle`.
fn wait_for_text(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn file_capabilities_trace_own_process_with_ebpf_and_drop_every_capability() {
    ensure_tracefs();
    let (dir, bin) = capable_copy("cap_bpf,cap_perfmon,cap_dac_read_search+ep");
    let (mut target, pid) = nobody_mapper();
    let err_path = dir.path().join("stderr");
    let out_path = dir.path().join("stdout");
    let mut tracer = as_nobody(&bin)
        .args(["trace", "--duration", "2", "--no-initial-table"])
        .arg(pid.to_string())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("tracer starts");
    let err = wait_for_text(&err_path, "pmap trace: tracing");
    assert!(
        err.contains("(ebpf:"),
        "a file-capability install must use eBPF: {err}"
    );
    // Once attached, nothing is left to misuse.
    let left = caps_left(tracer.id());
    assert!(left.is_empty(), "capabilities kept: {left:?}");
    let st = tracer.wait().expect("tracer ends");
    let _ = target.kill();
    let _ = target.wait();
    assert!(st.success(), "tracer failed: {err}");
    let out = std::fs::read_to_string(&out_path).expect("stdout");
    assert!(
        out.lines()
            .any(|l| l.contains(" mmap(") || l.contains(" munmap(")),
        "no traced syscall in the output:\n{out}"
    );
}

#[test]
fn file_capabilities_do_not_reveal_other_users_maps() {
    ensure_tracefs();
    let (_dir, bin) = capable_copy("cap_bpf,cap_perfmon,cap_dac_read_search+ep");
    // A root-owned process: nobody cannot read its maps, so neither may
    // the capable tracer run by nobody.
    let mut root_proc = Command::new("sleep").arg("30").spawn().expect("sleep");
    let out = as_nobody(&bin)
        .args(["trace", "--duration", "1"])
        .arg(root_proc.id().to_string())
        .output()
        .expect("tracer runs");
    let _ = root_proc.kill();
    let _ = root_proc.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail, printed: {stderr}");
    assert!(
        stderr.contains("cannot read the memory map of process"),
        "unexpected message: {stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("r-x"),
        "a map was printed to a user who may not see it"
    );
}

#[test]
fn without_privileges_it_falls_back_to_polling_and_says_why() {
    let (dir, bin) = capable_copy("");
    let (mut target, pid) = nobody_mapper();
    let out = as_nobody(&bin)
        .args(["trace", "--duration", "1.5", "--no-initial-table"])
        .arg(pid.to_string())
        .output()
        .expect("tracer runs");
    let _ = target.kill();
    let _ = target.wait();
    drop(dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stderr: {stderr}");
    assert!(stderr.contains("eBPF cannot be used here"), "{stderr}");
    assert!(
        stderr.contains("CAP_BPF"),
        "the reason must name what is missing: {stderr}"
    );
    assert!(stderr.contains("(poll: every 0.1s)"), "{stderr}");
    assert!(
        stdout.contains("observed by polling"),
        "no polled delta in:\n{stdout}"
    );
    assert!(stdout.contains("--- summary pid"), "{stdout}");
}

#[test]
fn forcing_ebpf_without_privileges_fails_clearly() {
    let (_dir, bin) = capable_copy("");
    let out = as_nobody(&bin)
        .args(["trace", "--backend", "ebpf", "--duration", "1", "1"])
        .output()
        .expect("tracer runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("needs capabilities CAP_BPF and CAP_PERFMON"),
        "{stderr}"
    );
}

#[test]
fn refuses_to_trace_itself() {
    // `pmap trace $$` from a shell that then execs pmap: same pid.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {} trace $$", pmap_bin().display()))
        .output()
        .expect("sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("refusing to trace itself"), "{stderr}");
}
