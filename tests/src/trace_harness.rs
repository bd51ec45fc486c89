//! Driving `pmap trace` and the workloads it traces, for the end-to-end
//! tests in tests/tests/trace_*.rs: start the tracer and read its output as
//! it comes, start a workload and catch its checkpoint stops, take `pmap`
//! snapshots, compare tables with a readable diff, and list the eBPF objects
//! a process holds.
//!
//! Everything here panics with a message that says what was expected and
//! shows what came instead (these are test helpers).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The reference implementation every table is compared with.
pub const REFERENCE_PMAP: &str = "/usr/bin/pmap";

/// Tests in one test binary run one at a time: they share the kernel's
/// tracepoints and two CPUs, and a tracer starved by a parallel test could
/// lose events for reasons that have nothing to do with it.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Lines read from one pipe, as they arrive.
#[derive(Default)]
struct Lines {
    lines: Mutex<(Vec<String>, bool)>,
    cv: Condvar,
}

impl Lines {
    fn reader(src: impl Read + Send + 'static) -> Arc<Lines> {
        let lines = Arc::new(Lines::default());
        let l = Arc::clone(&lines);
        std::thread::spawn(move || {
            let mut r = BufReader::new(src);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if buf.last() == Some(&b'\n') {
                            buf.pop();
                        }
                        let s = String::from_utf8_lossy(&buf).into_owned();
                        l.lines.lock().expect("lines lock").0.push(s);
                        l.cv.notify_all();
                    }
                }
            }
            l.lines.lock().expect("lines lock").1 = true;
            l.cv.notify_all();
        });
        lines
    }

    fn snapshot(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").0.clone()
    }

    fn len(&self) -> usize {
        self.lines.lock().expect("lines lock").0.len()
    }

    fn eof(&self) -> bool {
        self.lines.lock().expect("lines lock").1
    }

    /// Waits until `f(lines)` returns Some, the pipe closes, or the timeout.
    fn wait<T>(&self, timeout: Duration, mut f: impl FnMut(&[String]) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut g = self.lines.lock().expect("lines lock");
        loop {
            if let Some(v) = f(&g.0) {
                return Some(v);
            }
            let now = Instant::now();
            if g.1 || now >= deadline {
                return None;
            }
            g = self
                .cv
                .wait_timeout(g, deadline - now)
                .expect("lines lock")
                .0;
        }
    }

    fn wait_eof(&self, timeout: Duration) -> bool {
        self.wait(timeout, |_| None::<()>);
        self.eof()
    }
}

/// One framed table from the tracer's text output.
#[derive(Clone, Debug)]
pub struct Table {
    pub pid: u32,
    pub reason: String,
    /// Index of the header line in the tracer's stdout.
    pub line: usize,
    /// The lines between the frame lines: what `pmap` prints.
    pub body: Vec<String>,
}

/// `--- table pid 1234 (initial) +0.000s ---` -> (1234, "initial").
pub fn parse_table_header(line: &str) -> Option<(u32, String)> {
    let rest = line.strip_prefix("--- table pid ")?;
    let (pid, rest) = rest.split_once(' ')?;
    let reason = rest.strip_prefix('(')?.split_once(')')?.0;
    Some((pid.parse().ok()?, reason.to_string()))
}

pub const TABLE_END: &str = "--- end table ---";

/// Every complete table in `lines`, in order.
pub fn parse_tables(lines: &[String]) -> Vec<Table> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some((pid, reason)) = parse_table_header(&lines[i]) {
            if let Some(end) = lines[i + 1..].iter().position(|l| l == TABLE_END) {
                out.push(Table {
                    pid,
                    reason,
                    line: i,
                    body: lines[i + 1..i + 1 + end].to_vec(),
                });
                i += end + 2;
                continue;
            }
            break;
        }
        i += 1;
    }
    out
}

/// Lines of `lines` that are not inside a table or summary frame (deltas,
/// exec and exit notes).
pub fn non_table_lines(lines: &[String]) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut in_frame = false;
    for (i, l) in lines.iter().enumerate() {
        if parse_table_header(l).is_some() || l.starts_with("--- summary pid ") {
            in_frame = true;
        } else if l == TABLE_END || l == "--- end summary ---" {
            in_frame = false;
        } else if !in_frame {
            out.push((i, l.as_str()));
        }
    }
    out
}

/// Delta headers (`+T pid P tid T call(args) = -1 ERRNO ...`) of failed
/// calls that, by the kernel's contract, fail before changing anything:
/// the tracer must count them, not print them (without `--show-failed`).
/// Calls that may fail half-way (mprotect, madvise, mlock ENOMEM...) are
/// not listed.
pub fn printed_unchanging_failures(lines: &[String]) -> Vec<String> {
    const NO_CHANGE: &[(&str, &[&str])] = &[
        ("mmap", &["EEXIST", "EINVAL", "EBADF", "EACCES"]),
        ("mremap", &["EINVAL", "EFAULT"]),
        ("munmap", &["EINVAL"]),
        ("shmat", &["EINVAL", "EACCES", "EIDRM"]),
        ("shmdt", &["EINVAL"]),
    ];
    non_table_lines(lines)
        .into_iter()
        .filter_map(|(_, l)| {
            let rest = l.strip_prefix('+')?;
            let call = rest
                .split(" tid ")
                .nth(1)?
                .split_once(' ')?
                .1
                .split('(')
                .next()?;
            let errno = rest.split(" = -1 ").nth(1)?.split_whitespace().next()?;
            let (_, errs) = NO_CHANGE.iter().find(|(c, _)| *c == call)?;
            // A move of several regions without resizing (6.17+) may fail
            // half-way; with a resize it is refused before anything moves.
            let args: Vec<&str> = rest.split_once('(')?.1.split(", ").collect();
            let resized = args.get(1) != args.get(2);
            if call == "mremap" && errno == "EFAULT" && !resized {
                return None;
            }
            errs.contains(&errno).then(|| l.to_string())
        })
        .collect()
}

/// Delta blocks outside tables: each header line (`+T pid ...`) with the
/// region lines under it.
pub fn delta_blocks(lines: &[String]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (_, l) in non_table_lines(lines) {
        if l.starts_with('+') {
            out.push((l.to_string(), Vec::new()));
        } else if l.starts_with("  ")
            && let Some(last) = out.last_mut()
        {
            last.1.push(l.to_string());
        }
    }
    out
}

/// The end-of-trace summary of one pid.
#[derive(Debug)]
pub struct Summary {
    pub text: Vec<String>,
    pub lost: u64,
    pub corrections: u64,
}

/// The number after `key` in `text` (`events lost: 3` -> 3).
pub fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

pub fn parse_summary(lines: &[String], pid: u32) -> Option<Summary> {
    let head = format!("--- summary pid {pid} ");
    let start = lines.iter().position(|l| l.starts_with(&head))?;
    let len = lines[start..]
        .iter()
        .position(|l| l == "--- end summary ---")?;
    let text: Vec<String> = lines[start..=start + len].to_vec();
    let joined = text.join("\n");
    Some(Summary {
        lost: number_after(&joined, "events lost:")?,
        corrections: number_after(&joined, "model corrections:")?,
        text,
    })
}

/// A running `pmap trace`.
pub struct Tracer {
    child: Child,
    out: Arc<Lines>,
    err: Arc<Lines>,
    /// Stdout lines before this index have been consumed by `request_table`.
    cursor: usize,
    status: Option<ExitStatus>,
    pub args: Vec<String>,
}

impl Tracer {
    /// Starts `pmap trace ARGS...` with stdout and stderr captured.
    pub fn spawn(args: &[&str]) -> Tracer {
        let mut cmd = Command::new(crate::pmap_bin());
        cmd.arg("trace").args(args).stdin(Stdio::null());
        Self::spawn_cmd(cmd, args)
    }

    /// Starts `pmap trace ARGS...` whose stdout goes to `stdout` (a pipe to
    /// another process), stderr captured.
    pub fn spawn_with_stdout(args: &[&str], stdout: Stdio) -> Tracer {
        let mut cmd = Command::new(crate::pmap_bin());
        cmd.arg("trace")
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", crate::pmap_bin()));
        let err = Lines::reader(child.stderr.take().expect("stderr piped"));
        let out = Arc::new(Lines::default());
        out.lines.lock().expect("lines lock").1 = true;
        Tracer {
            child,
            out,
            err,
            cursor: 0,
            status: None,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn spawn_cmd(mut cmd: Command, args: &[&str]) -> Tracer {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", crate::pmap_bin()));
        let out = Lines::reader(child.stdout.take().expect("stdout piped"));
        let err = Lines::reader(child.stderr.take().expect("stderr piped"));
        Tracer {
            child,
            out,
            err,
            cursor: 0,
            status: None,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> Vec<String> {
        self.out.snapshot()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.err.snapshot()
    }

    /// The tail of both streams, for failure messages.
    /// Also saves the whole output under the temp dir (named in the text),
    /// since a failure may need more than the tail.
    pub fn context(&self) -> String {
        let tail = |v: &[String], n: usize| v[v.len().saturating_sub(n)..].join("\n");
        let (out, err) = (self.stdout(), self.stderr());
        let base = std::env::temp_dir().join(format!("pmap-trace-test-{}", self.pid()));
        let saved = std::fs::write(base.with_extension("out"), out.join("\n"))
            .and_then(|()| std::fs::write(base.with_extension("err"), err.join("\n")))
            .map_or_else(
                |e| format!("(could not save the full output: {e})"),
                |()| format!("(full output in {}.out and .err)", base.display()),
            );
        format!(
            "pmap trace {} {saved}\n--- last stdout lines ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            tail(&out, 60),
            tail(&err, 40)
        )
    }

    /// Waits for the stderr line that says the probes are attached.
    pub fn wait_tracing(&mut self, timeout: Duration) -> String {
        let found = self.err.wait(timeout, |ls| {
            ls.iter()
                .find(|l| l.starts_with("pmap trace: tracing"))
                .cloned()
        });
        match found {
            Some(l) => l,
            None => {
                let st = self.child.try_wait().ok().flatten();
                panic!(
                    "no `pmap trace: tracing` line on stderr within {timeout:?} (tracer status {st:?}); \
                     is pmap built with its eBPF programs (no PMAP_NO_EBPF) and run as root?\n{}",
                    self.context()
                )
            }
        }
    }

    /// Waits for a stderr line that satisfies `pred` (searching all of stderr).
    pub fn wait_stderr(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.err
            .wait(timeout, |ls| ls.iter().find(|l| pred(l)).cloned())
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(self.pid() as i32, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Waits for the next table of `pid` (any pid if None) with `reason`
    /// after what was already consumed.
    pub fn next_table(
        &mut self,
        pid: impl Into<Option<u32>>,
        reason: &str,
        timeout: Duration,
    ) -> Table {
        let pid = pid.into();
        let from = self.cursor;
        let found = self.out.wait(timeout, |ls| {
            parse_tables(&ls[from..])
                .into_iter()
                .find(|t| pid.is_none_or(|p| t.pid == p) && t.reason == reason)
                .map(|mut t| {
                    t.line += from;
                    t
                })
        });
        match found {
            Some(t) => {
                self.cursor = t.line + t.body.len() + 2;
                t
            }
            None => panic!(
                "no `({reason})` table for pid {pid:?} within {timeout:?}\n{}",
                self.context()
            ),
        }
    }

    /// Sends SIGUSR1 and returns the table the tracer prints for `pid`.
    pub fn request_table(&mut self, pid: u32) -> Table {
        self.cursor = self.cursor.max(self.out.len());
        self.signal(libc::SIGUSR1);
        self.next_table(pid, "SIGUSR1", Duration::from_secs(30))
    }

    /// Sends SIGUSR1 and returns the tables printed for each of `pids`
    /// (in the order given), whatever order they come in.
    pub fn request_tables(&mut self, pids: &[u32]) -> Vec<Table> {
        let from = self.cursor.max(self.out.len());
        self.signal(libc::SIGUSR1);
        let found = self.out.wait(Duration::from_secs(30), |ls| {
            let tables: Vec<Table> = parse_tables(&ls[from..])
                .into_iter()
                .filter(|t| t.reason == "SIGUSR1")
                .map(|mut t| {
                    t.line += from;
                    t
                })
                .collect();
            pids.iter()
                .map(|p| tables.iter().find(|t| t.pid == *p).cloned())
                .collect::<Option<Vec<Table>>>()
        });
        let Some(tables) = found else {
            panic!(
                "no SIGUSR1 tables for all of {pids:?} within 30s\n{}",
                self.context()
            )
        };
        self.cursor = tables
            .iter()
            .map(|t| t.line + t.body.len() + 2)
            .max()
            .unwrap_or(from);
        tables
    }

    /// With `--json`: sends SIGUSR1 and returns the regions of the `table`
    /// record printed for `pid`, as normalised maps lines (see `maps_lines`).
    pub fn request_json_table(&mut self, pid: u32) -> Vec<String> {
        self.cursor = self.cursor.max(self.out.len());
        self.signal(libc::SIGUSR1);
        let from = self.cursor;
        let found = self.out.wait(Duration::from_secs(30), |ls| {
            ls[from..].iter().enumerate().find_map(|(i, l)| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                let is_it = v["type"] == "table" && v["reason"] == "SIGUSR1" && v["pid"] == pid;
                is_it.then(|| (from + i, v))
            })
        });
        let Some((at, v)) = found else {
            panic!(
                "no JSON SIGUSR1 table for pid {pid} within 30s\n{}",
                self.context()
            )
        };
        self.cursor = at + 1;
        let regions = v["regions"]
            .as_array()
            .unwrap_or_else(|| panic!("table without regions: {v}"));
        regions.iter().map(json_region_line).collect()
    }

    /// Waits for the tracer to exit and for its pipes to close.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait on the tracer") {
                self.status = Some(st);
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_secs(2));
                assert!(
                    self.out.wait_eof(left),
                    "tracer exited but its stdout stayed open"
                );
                self.err.wait_eof(left);
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "pmap trace did not exit within {timeout:?}\n{}",
                self.context()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The summary of `pid` (after exit).
    pub fn summary(&self, pid: u32) -> Summary {
        parse_summary(&self.stdout(), pid).unwrap_or_else(|| {
            panic!(
                "no complete summary for pid {pid} in the tracer's stdout\n{}",
                self.context()
            )
        })
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a stopped-or-exited wait saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Stopped,
    Exited(i32),
    Signaled(i32),
}

/// A workload process (one of this crate's bins, or any command) that is
/// our child, so that waitpid reports its checkpoint stops.
pub struct Workload {
    child: Child,
    stdin: Option<ChildStdin>,
    err: Arc<Lines>,
    reaped: bool,
}

impl Workload {
    pub fn spawn_bin(name: &str, args: &[&str]) -> Workload {
        Self::spawn(Command::new(crate::workload_bin(name)).args(args))
    }

    pub fn spawn(cmd: &mut Command) -> Workload {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting workload {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let err = Lines::reader(child.stderr.take().expect("stderr piped"));
        Workload {
            child,
            stdin,
            err,
            reaped: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.err.snapshot()
    }

    /// Lets the workload start (it waits for a line on stdin).
    pub fn release(&mut self) {
        if let Some(mut s) = self.stdin.take() {
            let _ = s.write_all(b"go\n");
        }
    }

    /// Waits until the workload stops itself or exits.
    pub fn wait_event(&mut self, timeout: Duration) -> Event {
        assert!(!self.reaped, "workload already exited");
        let deadline = Instant::now() + timeout;
        let mut nap = Duration::from_micros(200);
        loop {
            let mut st = 0;
            // SAFETY: waiting on our own child; `st` is a valid out pointer.
            let r = unsafe {
                libc::waitpid(self.pid() as i32, &mut st, libc::WUNTRACED | libc::WNOHANG)
            };
            assert!(r >= 0, "waitpid: {}", std::io::Error::last_os_error());
            if r > 0 {
                if libc::WIFSTOPPED(st) {
                    return Event::Stopped;
                }
                self.reaped = true;
                if libc::WIFEXITED(st) {
                    return Event::Exited(libc::WEXITSTATUS(st));
                }
                return Event::Signaled(libc::WTERMSIG(st));
            }
            assert!(
                Instant::now() < deadline,
                "workload {} neither stopped nor exited within {timeout:?}; its stderr:\n{}",
                self.pid(),
                self.stderr().join("\n")
            );
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(10));
        }
    }

    pub fn cont(&self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid() as i32, libc::SIGCONT) };
    }

    /// Per-op counts the workload printed at exit: name -> (done, failed).
    pub fn op_counts(&self) -> Vec<(String, u64, u64)> {
        self.stderr()
            .iter()
            .filter_map(|l| {
                let rest = l.strip_prefix("trace_workload: op ")?;
                let name = rest.split_whitespace().next()?.to_string();
                Some((
                    name,
                    number_after(rest, " done ")?,
                    number_after(rest, " failed ")?,
                ))
            })
            .collect()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        if !self.reaped {
            let pid = self.pid() as i32;
            // SAFETY: signalling and reaping our own child. SIGTERM lets the
            // workload remove its SysV segments; SIGCONT so a stopped one sees it.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
                libc::kill(pid, libc::SIGCONT);
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                let mut st = 0;
                // SAFETY: as above.
                let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
                if r != 0 {
                    break;
                }
                if Instant::now() > deadline {
                    // SAFETY: as above.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                        libc::waitpid(pid, &mut st, 0);
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = std::fs::remove_dir_all(
            std::env::temp_dir().join(format!("pmap-trace-workload-{}", self.pid())),
        );
    }
}

/// `start-end perms offset dev inode name`, all hex without padding but
/// the device and inode, for comparing the tracer's JSON regions with
/// /proc/PID/maps independently of any table format.
fn normal_line(
    start: u64,
    end: u64,
    perms: &str,
    offset: u64,
    dev: &str,
    inode: u64,
    name: &str,
) -> String {
    format!("{start:x}-{end:x} {perms} {offset:x} {dev} {inode} {name}")
}

fn hex(v: &serde_json::Value) -> u64 {
    v.as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .or_else(|| v.as_u64())
        .unwrap_or_else(|| panic!("not an address: {v}"))
}

/// One JSON region (`{"start":"0x..","end":..,"perms":..,...}`) as a normalised line.
pub fn json_region_line(r: &serde_json::Value) -> String {
    normal_line(
        hex(&r["start"]),
        hex(&r["end"]),
        r["perms"].as_str().unwrap_or("?"),
        r["offset"].as_u64().unwrap_or_else(|| hex(&r["offset"])),
        r["dev"].as_str().unwrap_or("?"),
        r["inode"].as_u64().unwrap_or(u64::MAX),
        r["name"].as_str().unwrap_or("?"),
    )
}

/// /proc/PID/maps as normalised lines.
pub fn maps_lines(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/maps: {e}"));
    String::from_utf8_lossy(&raw)
        .lines()
        .map(|l| {
            let mut f = l.splitn(6, ' ');
            let mut next = || f.next().unwrap_or("");
            let (range, perms, off, dev, inode) = (next(), next(), next(), next(), next());
            let name = next().trim_start();
            let (s, e) = range.split_once('-').unwrap_or(("0", "0"));
            let h = |x: &str| u64::from_str_radix(x, 16).unwrap_or(u64::MAX);
            normal_line(
                h(s),
                h(e),
                perms,
                h(off),
                dev,
                inode.parse().unwrap_or(u64::MAX),
                name,
            )
        })
        .collect()
}

/// For a process that is not our child (launched by the tracer): waits
/// until it is stopped (state `T` in /proc/PID/stat; true) or gone or a
/// zombie (false).
pub fn wait_stopped_or_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // "pid (comm) S ...": the state follows the last ')'.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next());
        match state {
            Some("T") => return true,
            None | Some("Z") | Some("X") => return false,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} neither stopped nor exited within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `pmap [FLAGS] PID` by the reference implementation, as lines.
pub fn reference_pmap(pid: u32, flags: &[&str]) -> Vec<String> {
    let out = Command::new(REFERENCE_PMAP)
        .args(flags)
        .arg(pid.to_string())
        .output()
        .unwrap_or_else(|e| panic!("running {REFERENCE_PMAP}: {e} (procps must be installed)"));
    assert!(
        out.status.success(),
        "{REFERENCE_PMAP} {pid} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A line diff of `expected` and `actual` (longest common subsequence),
/// showing only changed lines with up to 2 lines of context.
pub fn diff(expected: &[String], actual: &[String]) -> String {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            ops.push((' ', &expected[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(('+', &actual[j]));
            j += 1;
        } else {
            ops.push(('-', &expected[i]));
            i += 1;
        }
    }
    let near = |k: usize| {
        ops[k.saturating_sub(2)..(k + 3).min(ops.len())]
            .iter()
            .any(|o| o.0 != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (c, l)) in ops.iter().enumerate() {
        if near(k) {
            if skipped {
                out.push_str("  ...\n");
                skipped = false;
            }
            out.push_str(&format!("{c} {l}\n"));
        } else {
            skipped = true;
        }
    }
    out
}

/// Panics with a diff unless the tracer's JSON regions equal /proc/PID/maps.
pub fn assert_regions_match(regions: &[String], maps: &[String], what: &str, tracer: &Tracer) {
    if regions != maps {
        panic!(
            "{what}: the tracer's regions differ from /proc/PID/maps ('-' maps only, '+' tracer only):\n{}\n{}",
            diff(maps, regions),
            tracer.context()
        );
    }
}

/// Panics with a diff unless the tracer's table equals `pmap`'s output.
pub fn assert_table_matches(table: &Table, reference: &[String], what: &str, tracer: &Tracer) {
    if table.body != reference {
        panic!(
            "{what}: the tracer's table differs from `pmap {}` \
             ('-' pmap only, '+' tracer only):\n{}\n{}",
            table.pid,
            diff(reference, &table.body),
            tracer.context()
        );
    }
}

/// eBPF objects a process holds through its descriptors.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BpfObjects {
    pub progs: Vec<u64>,
    pub links: Vec<u64>,
    pub maps: Vec<u64>,
}

impl BpfObjects {
    pub fn is_empty(&self) -> bool {
        self.progs.is_empty() && self.links.is_empty() && self.maps.is_empty()
    }
}

/// The eBPF programs, links and maps `pid` holds open (from
/// /proc/PID/fd and fdinfo).
pub fn bpf_objects_of(pid: u32) -> BpfObjects {
    let mut o = BpfObjects::default();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return o;
    };
    for e in dir.flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let (list, key) = match target.as_str() {
            "anon_inode:bpf-prog" => (&mut o.progs, "prog_id:"),
            "anon_inode:bpf_link" => (&mut o.links, "link_id:"),
            "anon_inode:bpf-map" => (&mut o.maps, "map_id:"),
            _ => continue,
        };
        if let Some(id) = number_after(&info, key) {
            list.push(id);
        }
    }
    for l in [&mut o.progs, &mut o.links, &mut o.maps] {
        l.sort_unstable();
        l.dedup();
    }
    o
}

fn bpftool_path() -> PathBuf {
    for p in ["/usr/sbin/bpftool", "/usr/bin/bpftool", "/sbin/bpftool"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("bpftool is not installed: `apt-get install bpftool` (`cargo xtask deps` installs it)")
}

/// Ids listed by `bpftool -j KIND show` (KIND: prog, link, map).
pub fn bpftool_ids(kind: &str) -> Vec<u64> {
    let out = Command::new(bpftool_path())
        .args(["-j", kind, "show"])
        .output()
        .unwrap_or_else(|e| panic!("running bpftool {kind} show: {e}"));
    assert!(
        out.status.success(),
        "bpftool -j {kind} show failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bpftool -j {kind} show printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let mut ids: Vec<u64> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o.get("id").and_then(serde_json::Value::as_u64))
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

/// A pid no process has now.
pub fn unused_pid() -> u32 {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    (1000..max)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .expect("a free pid")
}

/// The first ELF executable called `name`: /usr/bin first, then `$PATH`
/// (skipping wrapper scripts such as pyenv shims, which would make the
/// launched program a shell rather than the interpreter).
pub fn find_elf(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/bin"))
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(name))
        .find(|p| {
            let mut magic = [0u8; 4];
            std::fs::File::open(p)
                .and_then(|mut f| f.read_exact(&mut magic))
                .is_ok()
                && magic == *b"\x7fELF"
        })
}
