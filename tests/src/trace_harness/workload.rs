//! Workload processes: our children, so that waitpid reports their
//! checkpoint stops; and waiting for the stops of a process we did not start.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lines::Lines;
use super::output::number_after;

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
    /// (Once it exited: after the reader has seen all of its stderr.)
    pub fn op_counts(&self) -> Vec<(String, u64, u64)> {
        if self.reaped {
            self.err.wait_eof(Duration::from_secs(10));
        }
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

/// For a process that is not our child (launched by the tracer): waits
/// until it is stopped (state `T` in /proc/PID/stat; true) or gone or a
/// zombie (false).
pub fn wait_stopped_or_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match crate::proc_state(pid) {
            Some('T') => return true,
            None | Some('Z' | 'X') => return false,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} neither stopped nor exited within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
