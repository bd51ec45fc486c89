//! A running `pmap trace`, its output read as it comes.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::compare::json_region_line;
use super::lines::Lines;
use super::output::{Summary, Table, parse_summary, parse_tables};

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

    /// Waits for a stdout line that satisfies `pred` (searching all of stdout).
    pub fn wait_stdout(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.out
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
