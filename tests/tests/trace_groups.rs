//! `pmap trace --comm NAME` and `--cgroup PATH`: processes traced by what
//! they are, those there at the start and those that come later (each with
//! its initial table when first seen), with the processes they fork.
//!
//! Needs root and the eBPF programs, like every trace test; `--cgroup`
//! creates a group of its own under /sys/fs/cgroup.

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::Duration,
};

use pmap_tests::{pmap_bin, trace_harness::Tracer, workload_bin};
use serde_json::Value;

const MIB: u64 = 1 << 20;

fn records(t: &Tracer) -> Vec<Value> {
    t.stdout()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(u64::MAX)
}

/// A python3 that prints `ready PID`, and on each line it reads maps
/// that many MiB (or forks a child that maps 3 MiB, on `fork`), and exits
/// on `quit`. Started under `name` as its command name when given.
struct Py {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    pid: u32,
}

const SCRIPT: &str = r#"
import mmap, os, sys
keep = []
print("ready", os.getpid(), flush=True)
for line in sys.stdin:
    w = line.strip()
    if w == "quit":
        break
    if w == "fork":
        pid = os.fork()
        if pid == 0:
            m = mmap.mmap(-1, 3 << 20)
            os._exit(0)
        os.waitpid(pid, 0)
    else:
        keep.append(mmap.mmap(-1, int(w) << 20))
    print("done", flush=True)
"#;

impl Py {
    fn spawn() -> Py {
        let mut c = Command::new("python3");
        c.args(["-u", "-c", SCRIPT]);
        Py::spawn_cmd(c)
    }

    fn spawn_cmd(mut cmd: Command) -> Py {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {cmd:?} ({e}): Debian packages python3, util-linux")
            });
        let stdin = child.stdin.take().expect("stdin");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut l = String::new();
        out.read_line(&mut l).expect("reading python3");
        let pid = l
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("python3 said {l:?}"));
        Py {
            child,
            stdin,
            out,
            pid,
        }
    }

    /// Sends a command and waits for it to be done.
    fn ask(&mut self, what: &str) {
        writeln!(self.stdin, "{what}").expect("writing to python3");
        let mut l = String::new();
        self.out.read_line(&mut l).expect("reading python3");
        assert_eq!(l.trim(), "done", "python3 did not do {what:?}");
    }

    fn quit(mut self) {
        writeln!(self.stdin, "quit").expect("writing to python3");
        assert!(self.child.wait().expect("python3").success());
    }
}

/// The deltas of `pid` that add a region of `bytes` by mmap.
fn mmaps_of(rs: &[Value], pid: u32, bytes: u64) -> usize {
    rs.iter()
        .filter(|d| d["type"] == "delta" && u(&d["pid"]) == u64::from(pid))
        .filter(|d| d["syscall"] == "mmap" && u(&d["args"][1]) == bytes && d["exact"] == true)
        .count()
}

fn has_table(rs: &[Value], pid: u32) -> bool {
    rs.iter()
        .any(|r| r["type"] == "table" && u(&r["pid"]) == u64::from(pid))
}

/// Ends a tracer that waits for more processes (SIGINT), cleanly.
fn end(mut t: Tracer) -> Vec<Value> {
    t.signal(libc::SIGINT);
    let status = t.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "pmap trace failed: {}", t.context());
    records(&t)
}

/// A process with the name when the trace starts gets its table then; one
/// started later joins at its first mapping call, with its table; both
/// are traced, and so are the children they fork.
#[test]
fn comm_traces_the_named_processes_now_and_later() {
    // A name no other process has: a copy of a workload under it.
    let name = format!("pmapcomm{}", std::process::id() % 100_000);
    let copy: PathBuf = workload_bin("fork_children").with_file_name(&name);
    std::fs::copy(workload_bin("fork_children"), &copy).expect("copying the workload");
    let start = |n: &str| {
        let mut c = Command::new(&copy)
            .arg(n)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the workload copy");
        let mut out = BufReader::new(c.stdout.take().expect("stdout"));
        let mut l = String::new();
        out.read_line(&mut l).expect("ready line");
        let pid: u32 = l
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .expect("ready PID");
        (c, out, pid)
    };
    let (mut first, mut first_out, first_pid) = start("1");
    let mut t = Tracer::spawn(&["--comm", &name, "--json"]);
    t.wait_tracing(Duration::from_secs(60));
    let (mut later, mut later_out, later_pid) = start("2");
    let mut children = Vec::new();
    for (c, out) in [(&mut first, &mut first_out), (&mut later, &mut later_out)] {
        writeln!(c.stdin.as_mut().expect("stdin"), "go").expect("go");
        for l in out.lines().map_while(Result::ok) {
            let f: Vec<&str> = l.split(' ').collect();
            if let ["child", pid, bytes] = f[..] {
                children.push((
                    pid.parse::<u32>().expect("child pid"),
                    bytes.parse::<u64>().expect("child bytes"),
                ));
            }
        }
        assert!(c.wait().expect("workload").success());
    }
    // Give the tracer a moment to read what the last child did.
    std::thread::sleep(Duration::from_millis(300));
    let rs = end(t);
    let _ = std::fs::remove_file(&copy);
    assert!(
        has_table(&rs, first_pid),
        "no initial table of the first process"
    );
    assert!(
        rs.iter().any(|r| r["type"] == "joined"
            && u(&r["pid"]) == u64::from(later_pid)
            && r["by"] == "comm"),
        "the later process did not join: {rs:?}"
    );
    assert!(
        has_table(&rs, later_pid),
        "no table of the later process when it joined"
    );
    assert_eq!(children.len(), 3);
    for (pid, bytes) in children {
        assert_eq!(
            mmaps_of(&rs, pid, bytes),
            1,
            "child {pid}'s mmap of {bytes} bytes"
        );
    }
}

/// Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup, or
/// /sys/fs/cgroup/unified on a machine with both hierarchies.
fn cgroup2_root() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split(' ').next()? == "cgroup2")
                .then(|| left.split(' ').nth(4).map(PathBuf::from))?
        })
        .expect("a cgroup v2 hierarchy mounted (the test needs cgroup v2)")
}

/// A group made for the test: one process in it when the trace starts,
/// one moved into it after; both traced, the second from its first
/// mapping call after the move, and their children too.
#[test]
fn cgroup_traces_its_processes_and_those_that_join_it() {
    let dir = cgroup2_root().join(format!("pmap-test-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "creating the cgroup {} ({e}): the test needs root and cgroup v2",
            dir.display()
        )
    });
    let join = |pid: u32| {
        std::fs::write(dir.join("cgroup.procs"), pid.to_string()).expect("moving into the cgroup")
    };
    let mut inside = Py::spawn();
    join(inside.pid);
    let mut outside = Py::spawn();
    let path = dir.display().to_string();
    let mut t = Tracer::spawn(&["--cgroup", &path, "--json"]);
    t.wait_tracing(Duration::from_secs(60));
    inside.ask("2");
    // Not in the group yet: not traced.
    outside.ask("4");
    join(outside.pid);
    // Its first mapping call in the group makes it join (that call is in
    // the table read then); the next ones are deltas.
    outside.ask("1");
    std::thread::sleep(Duration::from_millis(300));
    outside.ask("5");
    outside.ask("fork");
    let (inside_pid, outside_pid) = (inside.pid, outside.pid);
    inside.quit();
    outside.quit();
    std::thread::sleep(Duration::from_millis(300));
    let rs = end(t);
    let _ = std::fs::remove_dir(&dir);
    assert!(
        has_table(&rs, inside_pid),
        "no initial table of the process in the group"
    );
    assert_eq!(mmaps_of(&rs, inside_pid, 2 * MIB), 1, "its 2 MiB mmap");
    assert!(
        rs.iter().any(|r| r["type"] == "joined"
            && u(&r["pid"]) == u64::from(outside_pid)
            && r["by"] == "cgroup"),
        "the moved process did not join: {rs:?}"
    );
    assert_eq!(
        mmaps_of(&rs, outside_pid, 4 * MIB),
        0,
        "traced before it joined"
    );
    assert_eq!(
        mmaps_of(&rs, outside_pid, 5 * MIB),
        1,
        "its 5 MiB mmap after joining"
    );
    let child = rs
        .iter()
        .find(|r| r["type"] == "fork" && u(&r["ppid"]) == u64::from(outside_pid))
        .unwrap_or_else(|| panic!("no fork record of the moved process's child: {rs:?}"));
    let cpid = u(&child["pid"]);
    assert_eq!(
        mmaps_of(&rs, cpid as u32, 3 * MIB),
        1,
        "the child's 3 MiB mmap: {:?}",
        rs.iter()
            .filter(|r| u(&r["pid"]) == cpid)
            .collect::<Vec<_>>()
    );
}

/// A process in a PID namespace of its own, as in a container: traced by
/// the id we see, its JSON records also give its own (`ns_pid`). A tracer
/// inside such a namespace cannot use the kernel's ids: with `--backend
/// ebpf` it says so and exits 1; by default it falls back to polling.
#[test]
fn a_process_in_its_own_pid_namespace_shows_its_own_id_too() {
    let mut c = Command::new("unshare");
    c.args([
        "--pid",
        "--fork",
        "--mount-proc",
        "python3",
        "-u",
        "-c",
        SCRIPT,
    ]);
    let mut py = Py::spawn_cmd(c);
    assert_eq!(py.pid, 1, "python3 is the first process of its namespace");
    // unshare forks python3: its only child.
    let unshare = py.child.id();
    let kids = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
        .expect("unshare's children");
    let host: u32 = kids.trim().parse().expect("one child pid");
    let host_s = host.to_string();
    let mut t = Tracer::spawn(&["--json", "--no-initial-table", &host_s]);
    t.wait_tracing(Duration::from_secs(60));
    py.ask("2");
    py.quit();
    let status = t.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "pmap trace failed: {}", t.context());
    let rs = records(&t);
    let d = rs
        .iter()
        .find(|d| d["type"] == "delta" && d["syscall"] == "mmap" && u(&d["args"][1]) == 2 * MIB)
        .unwrap_or_else(|| panic!("no delta of the 2 MiB mmap: {rs:?}"));
    assert_eq!(u(&d["pid"]), u64::from(host), "shown by the id we see");
    assert_eq!(u(&d["ns_pid"]), 1, "and its own id: {d}");

    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(pmap_bin())
        .args(["trace", "--backend", "ebpf", "--", "true"])
        .output()
        .expect("running unshare");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("PID namespace other than the host's") && err.contains("--backend poll"),
        "{err}"
    );
}
