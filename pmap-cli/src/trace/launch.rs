//! `pmap trace -- COMMAND`: start a program so that nothing it maps is
//! missed, its loader's work included.
//!
//! The child asks to be ptraced before execve, so the kernel stops it right
//! after the exec, at its first instruction. The tracer then adds it to the
//! kernel filter, takes the seed snapshot, and detaches, which lets it run.
//! ptrace is used for nothing else.

use std::{
    ffi::OsString,
    os::unix::process::CommandExt,
    process::{Child, Command},
};

use anyhow::{Context as _, Result, bail};

pub struct Launched {
    pub pid: u32,
    child: Child,
    released: bool,
    /// Exit status once reaped.
    pub status: Option<std::process::ExitStatus>,
}

impl Launched {
    /// Starts `command` and waits until it is stopped after its execve.
    pub fn start(command: &[OsString]) -> Result<Launched> {
        let (prog, args) = command.split_first().context("no command given after --")?;
        let mut cmd = Command::new(prog);
        cmd.args(args);
        // SAFETY: the closure runs in the forked child before exec and only
        // calls ptrace, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
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
}

impl Drop for Launched {
    fn drop(&mut self) {
        if !self.released {
            // Never leave a stopped, traced child behind on an error path.
            let _ = self.child.kill();
            // SAFETY: detaching our own tracee; errors are irrelevant here.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, self.pid as i32, 0, 0) };
        }
    }
}
