//! Giving up privileges once the probes are attached.
//!
//! Installed with file capabilities (`setcap cap_bpf,cap_perfmon+ep`), the
//! tracer needs them only to load and attach its programs. It drops all of
//! them before it opens any process, so that it shows a map only to a user
//! who could read that process's `/proc/PID/maps` anyway (the kernel checks
//! ptrace read access against the caller's credentials at open).

use std::io;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Clears the effective, permitted and inheritable capability sets of this
/// thread (the tracer runs its loop on one thread, so that is the process).
pub fn drop_all() -> io::Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: header and data are valid capset arguments (version 3 takes
    // two data structs); the kernel only reads them.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // Also clear the ambient set so nothing we start inherits anything.
    // SAFETY: prctl with these arguments has no memory effects.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    Ok(())
}

/// The effective capability bits of this process (from /proc/self/status).
pub fn effective() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_all_leaves_no_effective_capability() {
        // In a child process, so the test runner keeps its own.
        // SAFETY: fork in a test; the child only calls async-signal-safe
        // functions plus reading /proc, then _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = drop_all().is_ok() && effective() == 0;
            // SAFETY: ends the child without running destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
}
