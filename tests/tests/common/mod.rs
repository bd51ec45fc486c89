//! Helpers for the compatibility tests: stopped workload processes, running
//! procps-ng's pmap and ours side by side, and readable diffs.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod layout;

use std::{
    ffi::{OsStr, OsString},
    io::{BufRead, BufReader},
    os::unix::{ffi::OsStrExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// procps-ng's pmap, the reference.
pub const REFERENCE: &str = "/usr/bin/pmap";

/// The reference. Panics when it is missing or is not procps-ng's: a
/// compatibility test with nothing to compare with must fail.
pub fn reference() -> PathBuf {
    let p = PathBuf::from(REFERENCE);
    assert!(
        p.exists(),
        "{REFERENCE} (procps-ng's pmap, the reference of these tests) is not installed: \
         install it with `cargo xtask deps` (as root; Debian package procps)"
    );
    let version = reference_version();
    assert!(
        version.starts_with("pmap from procps-ng "),
        "{REFERENCE} is not procps-ng's pmap (it says {version:?}): these tests compare with \
         Debian's procps package"
    );
    p
}

/// The reference's `-V` line, e.g. `pmap from procps-ng 4.0.2\n`: the
/// version text ours replaces (not fixed, so that any procps-ng release
/// installed here is the reference).
pub fn reference_version() -> String {
    static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LINE.get_or_init(|| {
        let out = Command::new(REFERENCE)
            .arg("-V")
            .output()
            .unwrap_or_else(|e| panic!("running {REFERENCE} -V: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .clone()
}

/// What one run printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: i32,
}

/// How to run a pmap: extra environment, uid, working directory.
#[derive(Clone, Debug, Default)]
pub struct Env {
    pub vars: Vec<(String, Option<OsString>)>,
    pub uid: Option<u32>,
}

impl Env {
    pub fn var(mut self, k: &str, v: impl AsRef<OsStr>) -> Self {
        self.vars.push((k.into(), Some(v.as_ref().to_owned())));
        self
    }
    pub fn unset(mut self, k: &str) -> Self {
        self.vars.push((k.into(), None));
        self
    }
}

/// Runs `bin` as `pmap` (argv[0] is "pmap" for both implementations, as
/// their messages show it).
pub fn run(bin: &Path, args: &[OsString], env: &Env) -> Output {
    let mut cmd = Command::new(bin);
    cmd.arg0("pmap").args(args).stdin(Stdio::null());
    for (k, v) in &env.vars {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    if let Some(uid) = env.uid {
        cmd.uid(uid).gid(uid);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    Output {
        stdout: out.stdout,
        stderr: out.stderr,
        status: out.status.code().unwrap_or(-1),
    }
}

pub fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// A line-by-line diff of two texts, readable in a test failure.
pub fn diff(what: &str, expected: &[u8], actual: &[u8]) -> String {
    let e: Vec<&[u8]> = expected.split(|&c| c == b'\n').collect();
    let a: Vec<&[u8]> = actual.split(|&c| c == b'\n').collect();
    let mut s = format!(
        "--- {what}: expected (procps-ng) {} lines, ours {} lines\n",
        e.len(),
        a.len()
    );
    let mut shown = 0;
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i), a.get(i));
        if x != y {
            let show = |l: Option<&&[u8]>| {
                l.map_or("<none>".into(), |l| String::from_utf8_lossy(l).into_owned())
            };
            s += &format!("line {}:\n  - {}\n  + {}\n", i + 1, show(x), show(y));
            shown += 1;
            if shown == 15 {
                s += "  ...\n";
                break;
            }
        }
    }
    s
}

/// Compares two outputs; `Err` holds a readable report.
pub fn check(args: &[OsString], expected: &Output, actual: &Output) -> Result<(), String> {
    if expected == actual {
        return Ok(());
    }
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut r = format!("pmap {}: outputs differ\n", shown.join(" "));
    if expected.status != actual.status {
        r += &format!(
            "exit status: expected {}, ours {}\n",
            expected.status, actual.status
        );
    }
    if expected.stdout != actual.stdout {
        r += &diff("stdout", &expected.stdout, &actual.stdout);
    }
    if expected.stderr != actual.stderr {
        r += &diff("stderr", &expected.stderr, &actual.stderr);
    }
    Err(r)
}

/// The help line procps-ng 4.0.6 added for `-k`, which 4.0.2 lacks.
pub const K_HELP: &[u8] = b" -k, --use-kernel-name       use names provided by kernel\n";

/// What `pmap --help` prints after procps-ng's text (and only there: the
/// usage text printed on errors is procps-ng's alone).
pub const BEYOND_PROCPS: &[u8] = b"
Beyond procps-ng:
 pmap trace PID | -- COMMAND  the memory map live, change by change (--help)
 pmap replay FILE             a trace --record FILE again; --at WHEN: the map
                              then; --leaks: what stayed mapped, by call site
 pmap diff A B                a map at two moments, PIDs, cores or snapshots
 pmap exporter                memory-map metrics for Prometheus (--help)
 pmap --help-views            --json, --summary, --sort, --names, Solaris's
                              -S -a -r -s -L -l, core files, and their columns
 pmap man [PAGE]              print a man page (pmap man --list)
 pmap completions SHELL       print completions for bash, zsh or fish
";

/// The reference output adjusted for our documented differences in the
/// usage text (the `-k` line, and the section `--help` adds at its end)
/// and the version line.
pub fn usage_and_version(mut o: Output) -> Output {
    if o.stdout.ends_with(b"\nFor more details see pmap(1).\n") {
        o.stdout.extend_from_slice(BEYOND_PROCPS);
    }
    for text in [&mut o.stdout, &mut o.stderr] {
        let anchor = b" -p, --show-path             show path in the mapping\n";
        // A procps-ng that has the `-k` line (4.0.6 on) needs no insertion.
        if let Some(at) = find(text, anchor).filter(|_| find(text, K_HELP).is_none()) {
            let at = at + anchor.len();
            text.splice(at..at, K_HELP.iter().copied());
        }
        let version = reference_version();
        let v = version.as_bytes();
        if let Some(at) = find(text, v).filter(|_| !v.is_empty()) {
            let ours = format!("pmap from pmap-rs {}\n", env!("CARGO_PKG_VERSION"));
            text.splice(at..at + v.len(), ours.bytes());
        }
    }
    o
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A workload process, stopped (SIGSTOP) so that its map stays still while
/// both pmaps read it; killed on drop.
pub struct Stopped {
    pub child: Child,
    pub pid: u32,
}

impl Stopped {
    /// Starts `cmd` with stdout piped, waits for it to print `ready` (or
    /// `ready ...`), then stops it.
    pub fn start(mut cmd: Command) -> Stopped {
        cmd.stdout(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the workload's ready line");
        // `ready`, or `ready DETAILS` (many_maps says how many regions).
        assert!(
            line.trim() == "ready" || line.starts_with("ready "),
            "workload {cmd:?} did not get ready: {line:?}"
        );
        let pid = child.id();
        stop(pid);
        Stopped { child, pid }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGSTOP `pid` and wait until the kernel reports it stopped.
pub fn stop(pid: u32) {
    let pid_t = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: sending a signal to our own child.
    let rc = unsafe { libc::kill(pid_t, libc::SIGSTOP) };
    assert_eq!(rc, 0, "SIGSTOP {pid}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read(format!("/proc/{pid}/stat")).expect("workload stat");
        let close = stat
            .iter()
            .rposition(|&c| c == b')')
            .expect("stat has (comm)");
        if stat.get(close + 2) == Some(&b'T') {
            return;
        }
        assert!(Instant::now() < deadline, "workload {pid} did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A fresh empty directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("pmap-compat-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("creating a temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lines of a text (without the final empty piece).
pub fn lines(text: &[u8]) -> Vec<&[u8]> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|&c| c == b'\n').collect()
}

pub fn words(line: &[u8]) -> Vec<&[u8]> {
    line.split(|&c| c == b' ')
        .filter(|w| !w.is_empty())
        .collect()
}

pub fn to_os(b: &[u8]) -> OsString {
    OsStr::from_bytes(b).to_owned()
}
