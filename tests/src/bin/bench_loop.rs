//! The overhead loop of `cargo xtask bench trace`: N iterations of
//! (mmap 16 KiB anonymous rw, touch every page, mprotect the first 4 KiB
//! read-only, munmap the 16 KiB). Each iteration is three map-changing
//! syscalls, i.e. three tracer events.
//!
//! Usage: `bench_loop [--iters N] [--rate ITERS_PER_SEC] [--duration SECS] [--keep K] [--wait]`
//!
//! - `--iters N` (default 200,000): iterations to run.
//! - `--rate R`: pace the loop at R iterations per second on an absolute
//!   schedule (it catches up after a stall rather than drifting), for the
//!   throughput and latency measurements. Unpaced when absent.
//! - `--duration S`: with `--rate`, run for S seconds (iters = R * S).
//! - `--keep K`: unmap each 16 KiB mapping K iterations later instead of at
//!   once, so that every mapping lives long enough for a tracer to see it
//!   (a tracer that confirms changes against the kernel sees nothing of a
//!   mapping already gone); the process then holds about 2K more regions.
//! - `--wait`: print `ready PID` and wait for one line on stdin before
//!   starting, so that a tracer can be attached first.
//!
//! At the end prints one line:
//! `bench_loop iters N elapsed_ns T start_ns S end_ns E nvcsw V nivcsw I`
//! where T is the wall time of the loop alone, S/E are CLOCK_MONOTONIC at
//! its start and end, and V/I its voluntary and involuntary context switches
//! (whole process lifetime; the loop dominates them).

use std::io::{BufRead, Write};

const MAP_LEN: usize = 16 * 1024;
const PROTECT_LEN: usize = 4 * 1024;

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_loop: {e}");
        std::process::exit(1);
    }
}

struct Args {
    iters: u64,
    rate: Option<f64>,
    keep: usize,
    wait: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut iters: Option<u64> = None;
    let mut rate = None;
    let mut duration: Option<f64> = None;
    let mut wait = false;
    let mut keep = 0usize;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .map(|v| v.replace('_', ""))
        };
        match a.as_str() {
            "--iters" => {
                let v = value("--iters")?;
                iters = Some(v.parse().map_err(|e| format!("bad --iters {v:?}: {e}"))?);
            }
            "--rate" => {
                let v = value("--rate")?;
                let r: f64 = v.parse().map_err(|e| format!("bad --rate {v:?}: {e}"))?;
                if r.is_nan() || r <= 0.0 {
                    return Err(format!("--rate must be positive, not {v}"));
                }
                rate = Some(r);
            }
            "--duration" => {
                let v = value("--duration")?;
                duration = Some(
                    v.parse()
                        .map_err(|e| format!("bad --duration {v:?}: {e}"))?,
                );
            }
            "--keep" => {
                let v = value("--keep")?;
                keep = v.parse().map_err(|e| format!("bad --keep {v:?}: {e}"))?;
            }
            "--wait" => wait = true,
            "-h" | "--help" => {
                println!(
                    "usage: bench_loop [--iters N] [--rate ITERS_PER_SEC] [--duration SECS] [--keep K] [--wait]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    let iters = match (iters, rate, duration) {
        (Some(n), _, None) => n,
        (None, Some(r), Some(d)) => (r * d).round() as u64,
        (None, None, Some(_)) => return Err("--duration needs --rate".into()),
        (Some(_), _, Some(_)) => return Err("give --iters or --duration, not both".into()),
        (None, _, None) => 200_000,
    };
    Ok(Args {
        iters,
        rate,
        keep,
        wait,
    })
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

fn sleep_until(ns: u64) {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: ts is a valid timespec; a null remainder is allowed with TIMER_ABSTIME.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// The mappings kept alive by `--keep`, oldest first.
struct Kept {
    keep: usize,
    live: std::collections::VecDeque<usize>,
}

/// One iteration: three map-changing syscalls and four page faults.
fn iteration(kept: &mut Kept) -> Result<(), String> {
    // SAFETY: a fresh private anonymous mapping chosen by the kernel; it is
    // only touched inside its bounds, and unmapped (whole) exactly once: at
    // once, or `keep` iterations later.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            MAP_LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(os_err("mmap"));
        }
        let bytes = p.cast::<u8>();
        for off in (0..MAP_LEN).step_by(4096) {
            std::ptr::write_volatile(bytes.add(off), 1);
        }
        if libc::mprotect(p, PROTECT_LEN, libc::PROT_READ) != 0 {
            return Err(os_err("mprotect"));
        }
        kept.live.push_back(p as usize);
        if kept.live.len() > kept.keep
            && let Some(old) = kept.live.pop_front()
            && libc::munmap(old as *mut libc::c_void, MAP_LEN) != 0
        {
            return Err(os_err("munmap"));
        }
    }
    Ok(())
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    if args.wait {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready {}", std::process::id()).map_err(|e| format!("stdout: {e}"))?;
        out.flush().map_err(|e| format!("stdout: {e}"))?;
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("waiting for the go line on stdin: {e}"))?;
    }
    let mut kept = Kept {
        keep: args.keep,
        live: std::collections::VecDeque::with_capacity(args.keep + 1),
    };
    let start = monotonic_ns();
    match args.rate {
        None => {
            for _ in 0..args.iters {
                iteration(&mut kept)?;
            }
        }
        Some(rate) => {
            let period = 1e9 / rate;
            for i in 0..args.iters {
                let due = start + (i as f64 * period) as u64;
                if monotonic_ns() < due {
                    sleep_until(due);
                }
                iteration(&mut kept)?;
            }
        }
    }
    let end = monotonic_ns();
    // SAFETY: rusage is plain old data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer for RUSAGE_SELF.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "bench_loop iters {} elapsed_ns {} start_ns {start} end_ns {end} nvcsw {} nivcsw {}",
        args.iters,
        end - start,
        ru.ru_nvcsw,
        ru.ru_nivcsw
    )
    .map_err(|e| format!("stdout: {e}"))?;
    out.flush().map_err(|e| format!("stdout: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region_count() -> usize {
        std::fs::read_to_string("/proc/self/maps")
            .expect("read /proc/self/maps")
            .lines()
            .count()
    }

    #[test]
    fn keep_holds_that_many_mappings_and_no_more() {
        let mut kept = Kept {
            keep: 5,
            live: std::collections::VecDeque::new(),
        };
        for _ in 0..50 {
            iteration(&mut kept).expect("iteration");
        }
        assert_eq!(kept.live.len(), 5);
        // Each kept mapping is still there, with its first page read-only.
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        for &p in &kept.live {
            let head = format!("{p:x}-{:x} r--p", p + PROTECT_LEN);
            assert!(maps.contains(&head), "{head} not in maps:\n{maps}");
        }
    }

    #[test]
    fn without_keep_nothing_stays_mapped() {
        let mut kept = Kept {
            keep: 0,
            live: std::collections::VecDeque::new(),
        };
        iteration(&mut kept).expect("warm up");
        let before = region_count();
        for _ in 0..100 {
            iteration(&mut kept).expect("iteration");
        }
        assert!(kept.live.is_empty());
        // Other test threads may map stacks meanwhile; 100 leaked mappings would show.
        assert!(region_count() < before + 20);
    }
}
