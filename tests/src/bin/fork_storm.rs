//! A process that forks children at a steady rate, each of which maps,
//! touches and re-protects some memory, lives a while and exits: a
//! forking server under load, for measuring `pmap trace -f`.
//!
//! Usage: `fork_storm --rate PER_SEC --life SECS --duration SECS`. Prints
//! `ready PID`, waits for a line on stdin, forks for `--duration` seconds,
//! then waits for its last children and prints `forked N`. With a rate of
//! 50 and a life of 4 s about 200 children are alive at once.

use std::{
    io::{BufRead, Write},
    time::{Duration, Instant},
};

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: {v:?} is not a number"))
        })
        .unwrap_or(default)
}

/// What a child does: map 256 KiB, touch it, make its first page
/// read-only, sleep `life`, exit.
fn child(life: Duration) -> ! {
    const LEN: usize = 256 << 10;
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing, written and re-protected within its bounds; the child then
    // leaves with _exit, running none of the parent's atexit handlers.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p != libc::MAP_FAILED {
            std::ptr::write_bytes(p.cast::<u8>(), 1, LEN);
            libc::mprotect(p, 4096, libc::PROT_READ);
        }
        std::thread::sleep(life);
        libc::_exit(0)
    }
}

fn main() {
    let rate = arg("--rate", 50.0);
    let life = Duration::from_secs_f64(arg("--life", 4.0));
    let duration = Duration::from_secs_f64(arg("--duration", 10.0));
    // Children are reaped by the kernel: no zombies pile up.
    // SAFETY: setting a signal's disposition to SIG_IGN.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", std::process::id()).expect("stdout");
    out.flush().expect("stdout");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .expect("waiting for the go line");
    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut n = 0u64;
    while start.elapsed() < duration {
        // SAFETY: a single-threaded process; the child only makes syscalls
        // and exits (see `child`).
        match unsafe { libc::fork() } {
            0 => child(life),
            pid if pid < 0 => panic!("fork: {}", std::io::Error::last_os_error()),
            _ => n += 1,
        }
        let next = period * (n as u32);
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    std::thread::sleep(life + Duration::from_millis(500));
    writeln!(out, "forked {n}").expect("stdout");
}
