//! Starts a program as dash does, with vfork, but waits in the child
//! before the exec: the child then shares its parent's address space for
//! that long, which a tracer that looks at it then must not take for the
//! child's own after the exec.
//!
//! Usage: `vfork_exec MILLISECONDS PROGRAM [ARG...]`. Exits with the
//! program's exit status (127 if it could not be run).

use std::ffi::CString;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(ms), Some(_)) = (
        args.first().and_then(|a| a.parse::<u64>().ok()),
        args.get(1),
    ) else {
        eprintln!("usage: vfork_exec MILLISECONDS PROGRAM [ARG...]");
        std::process::exit(2);
    };
    // Everything the child needs is prepared before the vfork: it may only
    // make raw system calls.
    let argv: Vec<CString> = args[1..]
        .iter()
        .map(|a| CString::new(a.as_str()).expect("an argument holds a NUL byte"))
        .collect();
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let child = Child {
        wait: libc::timespec {
            tv_sec: (ms / 1000) as libc::time_t,
            tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
        },
        argv: ptrs.as_ptr(),
    };
    // vfork as glibc's posix_spawn does it: clone with CLONE_VM|CLONE_VFORK
    // onto a stack of its own (libc::vfork returning twice on one stack is
    // unsound in Rust). The parent sleeps until the child execs or exits.
    let mut stack = vec![0u8; 256 * 1024];
    // SAFETY: the stack is ours and outlives the child's use of it (the
    // parent is suspended until the child execs or exits); `child` is
    // only read by `run_child`.
    let pid = unsafe {
        libc::clone(
            run_child,
            stack.as_mut_ptr().add(stack.len()).cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&raw const child).cast_mut().cast(),
        )
    };
    if pid < 0 {
        eprintln!("vfork_exec: vfork: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    std::process::exit(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    });
}

struct Child {
    wait: libc::timespec,
    argv: *const *const libc::c_char,
}

/// The child: waits in its parent's address space, then execs.
extern "C" fn run_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Child`, alive while the parent is
    // suspended; the child only calls nanosleep, execvp and _exit.
    unsafe {
        let child = &*(arg as *const Child);
        libc::nanosleep(&child.wait, std::ptr::null_mut());
        libc::execvp(*child.argv, child.argv);
        libc::_exit(127)
    }
}
