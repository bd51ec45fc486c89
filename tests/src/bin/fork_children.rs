//! Forks children in a row, each of which maps memory as its very first
//! action and exits at once: the hardest case for following forks (a
//! child's first call comes microseconds after its creation, long before a
//! tracer in userspace could notice the fork).
//!
//! Usage: `fork_children N`. Prints `ready PID`, waits for a line on stdin,
//! then forks N children one after another, waiting for each. Child `i`
//! maps `(16 + i)` pages of anonymous memory, read-only (a size no other
//! call of the run has), and calls `_exit(0)`. Then the parent prints one
//! line per child, `child PID BYTES`, and exits.

use std::io::{BufRead, Write};

const PAGE: usize = 4096;

fn main() {
    let n: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("usage: fork_children N");
            std::process::exit(2);
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", std::process::id()).expect("stdout");
    out.flush().expect("stdout");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .expect("waiting for the go line on stdin");
    let mut children = Vec::with_capacity(n);
    for i in 0..n {
        let bytes = (16 + i) * PAGE;
        // SAFETY: fork in a single-threaded process; the child makes two
        // raw syscalls and exits without running any of Rust's runtime.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: an anonymous private mapping, no address given.
            unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    bytes,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                libc::_exit(0);
            }
        }
        assert!(pid > 0, "fork failed: {}", std::io::Error::last_os_error());
        let mut status = 0;
        // SAFETY: waits for the child just made.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
        children.push((pid, bytes));
    }
    for (pid, bytes) in children {
        writeln!(out, "child {pid} {bytes}").expect("stdout");
    }
}
