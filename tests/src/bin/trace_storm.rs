//! trace_storm: as many mmap/mprotect/munmap calls as the machine allows,
//! to overflow a tracer's ring buffer on purpose.
//!
//! ```text
//! trace_storm [--rounds R] [--per-round K] [--seed N]
//! ```
//!
//! Waits for a line on stdin (EOF works too), then runs R rounds of K
//! iterations; each maps 1-4 anonymous pages, writes to them, sometimes
//! changes the protection of one page, and unmaps a random older mapping once
//! more than 48 are live, so each round ends with a varied map. After each
//! round, and after unmapping everything at the end, it stops itself with
//! SIGSTOP (a checkpoint), then exits 0.

use std::io::BufRead;
use std::process::ExitCode;

const PAGE: usize = 4096;
const LIVE: usize = 48;

fn next(state: &mut u64) -> u64 {
    // xorshift64*: deterministic per seed, no dependency.
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn arg(name: &str, default: u64) -> Result<u64, String> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .ok_or(format!("{name} needs a value"))?
            .parse()
            .map_err(|e| format!("{name}: {e}")),
    }
}

fn stop_self() {
    // SAFETY: raising a signal has no memory-safety preconditions.
    unsafe { libc::raise(libc::SIGSTOP) };
}

fn run() -> Result<(), String> {
    let rounds = arg("--rounds", 3)?;
    let per_round = arg("--per-round", 20_000)?;
    let mut rng = arg("--seed", 1)? | 1;
    let _ = std::io::stdin().lock().read_line(&mut String::new());

    let mut live: Vec<(usize, usize)> = Vec::new();
    for _ in 0..rounds {
        for _ in 0..per_round {
            let len = (1 + next(&mut rng) as usize % 4) * PAGE;
            let prot = libc::PROT_READ | libc::PROT_WRITE;
            // SAFETY: a fresh anonymous mapping chosen by the kernel.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    prot,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(format!("mmap: {}", std::io::Error::last_os_error()));
            }
            let a = p as usize;
            // SAFETY: the page was just mapped read-write.
            unsafe { std::ptr::write_volatile(p.cast::<u8>(), 1) };
            if len > PAGE && next(&mut rng).is_multiple_of(2) {
                // SAFETY: the second page of the mapping just made.
                unsafe { libc::mprotect((a + PAGE) as *mut _, PAGE, libc::PROT_READ) };
            }
            live.push((a, len));
            if live.len() > LIVE {
                let (a, len) = live.swap_remove(next(&mut rng) as usize % live.len());
                // SAFETY: unmapping a mapping this loop made and no longer uses.
                unsafe { libc::munmap(a as *mut _, len) };
            }
        }
        stop_self();
    }
    for (a, len) in live.drain(..) {
        // SAFETY: as above.
        unsafe { libc::munmap(a as *mut _, len) };
    }
    stop_self();
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trace_storm: {e}");
            ExitCode::FAILURE
        }
    }
}
