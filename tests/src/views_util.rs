//! Helpers of the core-file and extra-view tests: workload processes,
//! `/proc/PID/maps` parsing, running pmap.

use std::path::PathBuf;

use crate::pmap_bin;

/// A workload process started by a test: killed (and reaped) when dropped,
/// so a failing test leaves nothing behind.
pub struct Workload {
    pub child: std::process::Child,
    /// The `key=value` pairs of the workload's `ready ...` line.
    pub ready: Vec<(String, String)>,
}

impl Workload {
    /// Starts `cmd` (stdout piped) and waits for its `ready` line.
    pub fn start(mut cmd: std::process::Command) -> Workload {
        use std::io::BufRead;
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the workload");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the workload's ready line");
        assert!(
            line.starts_with("ready"),
            "workload did not say ready: {line:?}"
        );
        let ready = line
            .split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Workload { child, ready }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The value of `key` in the ready line.
    pub fn get(&self, key: &str) -> &str {
        self.ready
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("workload's ready line has no {key}"))
    }

    /// An address printed in the ready line (`0x...`).
    pub fn addr(&self, key: &str) -> u64 {
        let v = self.get(key);
        u64::from_str_radix(v.trim_start_matches("0x"), 16).expect("hex address")
    }

    /// Sends SIGSTOP and waits until the kernel reports the process stopped,
    /// so that its map stays still while it is read.
    pub fn stop(&self) {
        signal(self.pid(), libc::SIGSTOP);
        for _ in 0..500 {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
                .expect("read the workload's stat");
            // The state follows the command in parentheses.
            if stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T'))
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("workload {} did not stop", self.pid());
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` to `pid`, panicking if it cannot.
pub fn signal(pid: u32, sig: i32) {
    let pid = i32::try_from(pid).expect("pid fits in pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapsLine {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub offset: u64,
    pub name: String,
}

/// Parses `/proc/PID/maps` (names kept as the kernel prints them, bytes
/// that are not UTF-8 as U+FFFD).
pub fn read_maps(pid: u32) -> Vec<MapsLine> {
    let raw = std::fs::read(format!("/proc/{pid}/maps")).expect("read maps");
    let text = String::from_utf8_lossy(&raw);
    text.lines()
        .map(|l| {
            let mut f = l.splitn(6, ' ');
            let range = f.next().expect("range");
            let perms = f.next().expect("perms").to_string();
            let offset = u64::from_str_radix(f.next().expect("offset"), 16).expect("hex offset");
            let _dev = f.next();
            let _inode = f.next();
            let name = f.next().unwrap_or("").trim_start().to_string();
            let (s, e) = range.split_once('-').expect("start-end");
            MapsLine {
                start: u64::from_str_radix(s, 16).expect("hex start"),
                end: u64::from_str_radix(e, 16).expect("hex end"),
                perms,
                offset,
                name,
            }
        })
        .collect()
}

/// Runs the built `pmap` with `args`; returns (stdout, stderr, exit code).
pub fn run_pmap<I, S>(args: I) -> (String, String, i32)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = std::process::Command::new(pmap_bin())
        .args(args)
        .output()
        .expect("run pmap");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// A fresh, empty directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pmap-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
