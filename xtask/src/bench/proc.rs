//! Child processes for the benchmarks: run one and take its wall time, CPU
//! time and peak RSS from `wait4`; keep long-lived workloads that are killed
//! when dropped; read a child's output lines on a thread.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// What one finished child cost.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Spawn to reaped, seconds.
    pub wall: f64,
    pub user: f64,
    pub sys: f64,
    /// Voluntary context switches: for a tracer, about how often it slept
    /// waiting for events and was woken.
    pub nvcsw: u64,
    /// Raw wait status.
    pub status: i32,
}

impl Usage {
    pub fn cpu(&self) -> f64 {
        self.user + self.sys
    }

    pub fn success(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }

    pub fn describe_status(&self) -> String {
        if libc::WIFEXITED(self.status) {
            format!("exit status {}", libc::WEXITSTATUS(self.status))
        } else if libc::WIFSIGNALED(self.status) {
            format!("killed by signal {}", libc::WTERMSIG(self.status))
        } else {
            format!("wait status {:#x}", self.status)
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of the tracer's `ktime_ns` and
/// of bench_loop's timestamps.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

fn tv_secs(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6
}

/// A spawned child that is killed and reaped when dropped, unless it was
/// already reaped by [`Running::wait`].
pub struct Running {
    pub child: Child,
    started: Instant,
    reaped: bool,
    what: String,
}

impl Running {
    pub fn spawn(cmd: &mut Command, what: &str) -> Result<Running> {
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {what} ({cmd:?})"))?;
        Ok(Running {
            child,
            started,
            reaped: false,
            what: what.to_string(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn pid_t(&self) -> libc::pid_t {
        // Linux PIDs fit in pid_t (pid_max <= 2^22).
        self.child.id() as libc::pid_t
    }

    /// Sends `sig`; an already-exited child is not an error.
    pub fn signal(&self, sig: libc::c_int) {
        if !self.reaped {
            // SAFETY: kill() on our own child's PID, not yet reaped, so the
            // PID cannot have been reused.
            unsafe { libc::kill(self.pid_t(), sig) };
        }
    }

    /// Waits for the child to exit; `None` on timeout (it is still running).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<Usage>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(u) = self.reap(libc::WNOHANG)? {
                return Ok(Some(u));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for the child to exit, however long it takes.
    pub fn wait(&mut self) -> Result<Usage> {
        match self.reap(0)? {
            Some(u) => Ok(u),
            None => bail!("wait4 returned no status for {}", self.what),
        }
    }

    /// SIGINT, then SIGKILL if it has not gone after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Result<Usage> {
        self.signal(libc::SIGINT);
        if let Some(u) = self.wait_timeout(grace)? {
            return Ok(u);
        }
        self.signal(libc::SIGKILL);
        self.wait()
    }

    fn reap(&mut self, flags: libc::c_int) -> Result<Option<Usage>> {
        if self.reaped {
            bail!("{} was already reaped", self.what);
        }
        let mut status = 0;
        // SAFETY: rusage is plain old data; all-zero is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = loop {
            // SAFETY: wait4 on our own child with valid out-pointers.
            let r = unsafe { libc::wait4(self.pid_t(), &mut status, flags, &mut ru) };
            if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break r;
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("waiting for {}", self.what));
        }
        if r == 0 {
            return Ok(None);
        }
        self.reaped = true;
        Ok(Some(Usage {
            wall: self.started.elapsed().as_secs_f64(),
            user: tv_secs(ru.ru_utime),
            sys: tv_secs(ru.ru_stime),
            nvcsw: ru.ru_nvcsw as u64,
            status,
        }))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(libc::SIGKILL);
            let _ = self.reap(0);
        }
    }
}

/// Runs `argv` to completion with its standard streams on /dev/null, and
/// returns what it cost. Wall time includes fork and exec, as for any
/// command a user runs, and is comparable between the commands measured.
///
/// The child is started as a shell starts a command: `fork`, then `execv`
/// in the child, while the parent goes straight to `wait4`. std's `spawn`
/// does otherwise (a `vfork` through `posix_spawn`, or a `fork` after
/// which the parent waits on a pipe for the `exec`), and the scheduler then
/// places a two-thread program's threads differently: session 9's `pmap`
/// took 1.22x of `cat`'s time started by std, 1.36x started by Python's
/// `fork` and 1.61x from a bash loop.
pub fn run_timed(argv: &[std::ffi::OsString], what: &str) -> Result<Usage> {
    use std::{ffi::CString, os::unix::ffi::OsStrExt};
    let program =
        find_program(argv.first().context("an empty command line")?).with_context(|| {
            format!("{what}: program not found on PATH; install it or give its full path")
        })?;
    let args = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{what}: an argument holds a NUL byte"))?;
    let program = CString::new(program.as_os_str().as_bytes())
        .with_context(|| format!("{what}: the program's path holds a NUL byte"))?;
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let started = Instant::now();
    // SAFETY: between fork and exec the child only calls async-signal-safe
    // functions (open, dup2, execv, _exit) on memory made before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("forking for {what}"));
    }
    if pid == 0 {
        // SAFETY: see above; the child never returns from this block.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null >= 0 {
                libc::dup2(null, 0);
                libc::dup2(null, 1);
                libc::dup2(null, 2);
            }
            libc::execv(program.as_ptr(), ptrs.as_ptr());
            libc::_exit(127);
        }
    }
    let mut status = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).with_context(|| format!("waiting for {what}"));
        }
    }
    Ok(Usage {
        wall: started.elapsed().as_secs_f64(),
        user: tv_secs(ru.ru_utime),
        sys: tv_secs(ru.ru_stime),
        nvcsw: ru.ru_nvcsw as u64,
        status,
    })
}

/// `program` itself if it names a path, else the first executable of that
/// name in `PATH`, as a shell finds it.
pub fn find_program(program: &std::ffi::OsStr) -> Option<std::path::PathBuf> {
    use std::os::unix::{ffi::OsStrExt, fs::PermissionsExt};
    if program.as_bytes().contains(&b'/') {
        return Some(program.into());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// GNU time, used for peak RSS: see [`peak_rss_kib`].
pub const GNU_TIME: &str = "/usr/bin/time";

/// Peak RSS (KiB) of `argv` run to completion, measured by GNU time.
///
/// `wait4`'s `ru_maxrss` cannot be used directly: at execve the kernel
/// folds the peak of the address space being replaced into the child's
/// maxrss, and a child spawned by this (large) process starts from a vfork
/// copy of it. GNU time is a small parent, so its floor is about 1 MiB.
pub fn peak_rss_kib(argv: &[std::ffi::OsString]) -> Result<f64> {
    let out = Command::new(GNU_TIME)
        .args(["-f", "%M"])
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {GNU_TIME} (Debian package `time`)"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or("").trim();
    last.parse::<f64>()
        .with_context(|| format!("{GNU_TIME} printed {last:?} for {argv:?}, not a size in KiB"))
}

/// Runs `cmd` once, capturing its output, for checks before timing.
pub fn run_captured(cmd: &mut Command) -> Result<std::process::Output> {
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))
}

/// Collects every line of a stream (e.g. a tracer's stderr) and forwards
/// each to a channel so that the caller can wait for a particular one.
pub struct LineLog {
    rx: mpsc::Receiver<String>,
    handle: Option<JoinHandle<Vec<String>>>,
    seen: Vec<String>,
}

impl LineLog {
    pub fn new<R: Read + Send + 'static>(r: R) -> LineLog {
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            let mut all = Vec::new();
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line.clone());
                all.push(line);
            }
            all
        });
        LineLog {
            rx,
            handle: Some(handle),
            seen: Vec::new(),
        }
    }

    /// Waits for a line for which `pred` holds; errors on timeout or end of
    /// stream, quoting what was seen.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "timed out after {timeout:?} waiting for {what}; output so far:\n{}",
                        self.seen.join("\n")
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!(
                        "{what}: the stream ended first; output was:\n{}",
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    /// Every line, once the stream has ended (the writer exited).
    pub fn finish(mut self) -> Vec<String> {
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}
