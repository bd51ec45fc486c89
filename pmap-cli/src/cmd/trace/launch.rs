//! `pmap trace -- COMMAND`: start a program so that nothing it maps is
//! missed, its loader's work included.
//!
//! The child asks to be ptraced before execve, so the kernel stops it right
//! after the exec, at its first instruction. The tracer then adds it to the
//! kernel filter, takes the seed snapshot, and detaches, which lets it run.
//! ptrace is used for nothing else.
//!
//! The command lives as long as the trace: when the trace ends before it
//! (`--duration`, SIGINT, SIGTERM, SIGHUP, a closed output, an error), it is
//! ended as `timeout` ends a command: SIGTERM, then SIGKILL if it is still
//! there after a grace period. A command left running, unseen, after its
//! trace is over is what nobody expects of `pmap trace -- COMMAND`.

use std::{
    ffi::OsString,
    os::{fd::AsFd, unix::process::CommandExt},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// How long the command has to end after SIGTERM before it gets SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

pub struct Launched {
    pub pid: u32,
    child: Child,
    released: bool,
    /// Exit status once reaped.
    pub status: Option<std::process::ExitStatus>,
    /// The program's name, for messages.
    name: String,
}

impl Launched {
    /// Starts `command` and waits until it is stopped after its execve.
    /// With `stdout_to_stderr`, the command's stdout is the tracer's
    /// stderr: the trace is on stdout, and the command's own output must
    /// not be mixed into it (it would break `--json | jq`).
    pub fn start(command: &[OsString], stdout_to_stderr: bool) -> Result<Launched> {
        let (prog, args) = command.split_first().context("no command given after --")?;
        let mut cmd = Command::new(prog);
        cmd.args(args);
        if stdout_to_stderr {
            let err = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .context("duplicating stderr for the command's output failed")?;
            cmd.stdout(Stdio::from(err));
        }
        // SAFETY: the closure runs in the forked child before exec and only
        // calls prctl and ptrace, which are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                // If the tracer dies without ending the command (SIGKILL),
                // the command still gets SIGTERM (the tracer's main thread,
                // which forks it, lives as long as the tracer).
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
                if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot run {:?}", prog.to_string_lossy()))?;
        let pid = child.id();
        let mut status = 0;
        // SAFETY: waiting for our own child; status is a valid out pointer.
        let rc = unsafe { libc::waitpid(pid as i32, &mut status, libc::WUNTRACED) };
        if rc != pid as i32 {
            bail!(
                "waiting for {:?} to start failed: {}",
                prog.to_string_lossy(),
                std::io::Error::last_os_error()
            );
        }
        if !libc::WIFSTOPPED(status) {
            bail!(
                "{:?} ended before its first instruction (wait status {status:#x})",
                prog.to_string_lossy()
            );
        }
        Ok(Launched {
            pid,
            child,
            released: false,
            status: None,
            name: prog.to_string_lossy().into_owned(),
        })
    }

    /// Lets the program run (detaches; it continues without a signal).
    pub fn release(&mut self) -> Result<()> {
        // SAFETY: the child is stopped and traced by us.
        let rc = unsafe { libc::ptrace(libc::PTRACE_DETACH, self.pid as i32, 0, 0) };
        if rc != 0 {
            bail!(
                "releasing process {} failed: {}",
                self.pid,
                std::io::Error::last_os_error()
            );
        }
        self.released = true;
        Ok(())
    }

    /// Collects the exit status if the program has ended (so that it does
    /// not linger as a zombie).
    pub fn reap(&mut self) {
        if self.status.is_none()
            && let Ok(Some(st)) = self.child.try_wait()
        {
            self.status = Some(st);
        }
    }

    /// Waits up to `limit` for the command to end by itself (it is
    /// exiting), reaping it.
    pub fn wait_for(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        self.reap();
        while self.status.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            self.reap();
        }
    }

    /// Ends the command if it still runs, as `timeout` does: SIGTERM (and
    /// SIGCONT, so that a stopped command sees it), then SIGKILL after
    /// `KILL_GRACE`; waits for it and says on stderr what was done and
    /// `why`. Nothing is said if it had ended already.
    pub fn end(&mut self, why: &str) {
        self.reap();
        if self.status.is_some() {
            return;
        }
        let pid = self.pid as libc::pid_t;
        // SAFETY: signalling our own child, not reaped yet: its id cannot
        // belong to another process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
            libc::kill(pid, libc::SIGCONT);
        }
        let deadline = Instant::now() + KILL_GRACE;
        while Instant::now() < deadline {
            self.reap();
            if self.status.is_some() {
                eprintln!(
                    "pmap trace: {why}: ended the command {} (pid {}) with SIGTERM",
                    self.name, self.pid
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
        eprintln!(
            "pmap trace: {why}: the command {} (pid {}) was still running {}s after SIGTERM: \
             killed it (SIGKILL)",
            self.name,
            self.pid,
            KILL_GRACE.as_secs()
        );
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if self.released {
            // An error ended the trace: the command ends with it.
            self.end("the trace stopped");
        } else {
            // Never leave a stopped, traced child behind on an error path.
            let _ = self.child.kill();
            // SAFETY: detaching our own tracee; errors are irrelevant here.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, self.pid as i32, 0, 0) };
        }
    }
}
