//! The floor under `pmap`'s snapshot design, for `cargo xtask bench
//! snapshot`: `/proc/PID/maps` or `smaps` read as `pmap` reads it, with no
//! parsing. A thread fills blocks of 32 KiB and hands them over through a
//! bounded channel (32 blocks) to a thread on another CPU, which returns
//! them for reuse, the last returned refilled first; the two are bound
//! apart once 64 KiB went over, and until then the reader stays at most 4
//! blocks ahead. The constants follow `pmap-cli/src/source/prefetch.rs`.
//!
//! Usage: `read_floor FILE MODE [BLOCK_KIB]`, MODE one of:
//! - `poll`: as `pmap`: the receiving thread looks for blocks every 50 µs
//!   and is woken for the last one only; it does not read them;
//! - `wake`: the receiving thread sleeps until woken for each block (what
//!   `pmap` did before): the cost of those wake-ups to the reading thread;
//! - `touch`: as `poll`, and the receiving thread reads every byte, as any
//!   parser must: adds moving the text between the CPUs' caches;
//! - `busy`: the receiving thread never sleeps and computes between its
//!   looks: what work on the other CPU costs the read by itself (on a
//!   machine whose two CPUs share one core, a lot: the kernel's text
//!   generation and the busy thread share the core's units).
//!
//! What `pmap` adds on top of `touch` is its own parsing and formatting.

use std::{
    fs::File,
    io::Read,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc::{TryRecvError, sync_channel},
    },
    time::Duration,
};

const BLOCK_KIB: usize = 32;
const DEPTH: usize = 32;
const EARLY_DEPTH: usize = 4;
const POLL: Duration = Duration::from_micros(50);
const SPREAD_AFTER: usize = 64 * 1024;

/// Binds the calling thread to `cpu`, as `pmap`'s `sys::spread` does.
/// Best effort: on a runner restricted to one CPU both threads stay there.
fn bind(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn current_cpu() -> usize {
    // SAFETY: no arguments; returns -1 on failure.
    usize::try_from(unsafe { libc::sched_getcpu() }).unwrap_or(0)
}

fn fail(what: String) -> ! {
    eprintln!("read_floor: {what}");
    std::process::exit(2);
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Poll,
    Wake,
    Touch,
    Busy,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(mode)) = (args.get(1), args.get(2)) else {
        fail("usage: read_floor FILE poll|wake|touch|busy [BLOCK_KIB]".into());
    };
    let mode = match mode.as_str() {
        "poll" => Mode::Poll,
        "wake" => Mode::Wake,
        "touch" => Mode::Touch,
        "busy" => Mode::Busy,
        m => fail(format!("unknown mode {m:?} (poll, wake, touch or busy)")),
    };
    let block_len = match args.get(3) {
        Some(k) => k
            .parse::<usize>()
            .ok()
            .filter(|&k| k > 0)
            .unwrap_or_else(|| fail(format!("{k:?} is not a block size in KiB")))
            .saturating_mul(1024),
        None => BLOCK_KIB * 1024,
    };
    let mut file = File::open(path).unwrap_or_else(|e| fail(format!("cannot open {path}: {e}")));
    let path_r = path.clone();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (tx, rx) = sync_channel::<(Vec<u8>, usize)>(DEPTH);
    let spares: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let used = spares.clone();
    let taken = Arc::new(AtomicUsize::new(0));
    let bound_apart = Arc::new(AtomicBool::new(false));
    let (taken_r, bound_r) = (taken.clone(), bound_apart.clone());
    let parser = std::thread::current();
    let reader = std::thread::spawn(move || {
        let mut sent = 0usize;
        loop {
            while !bound_r.load(Ordering::Relaxed)
                && sent.saturating_sub(taken_r.load(Ordering::Relaxed)) >= EARLY_DEPTH
            {
                std::thread::park_timeout(POLL);
            }
            let spare = used.lock().ok().and_then(|mut v| v.pop());
            let mut block = spare.unwrap_or_else(|| vec![0; block_len]);
            let mut end = 0;
            while end < block_len {
                match file.read(&mut block[end..]) {
                    Ok(0) => break,
                    Ok(k) => end += k,
                    Err(e) => fail(format!(
                        "reading {path_r}: {e} (is the process still there?)"
                    )),
                }
            }
            let last = end < block_len;
            if tx.send((block, current_cpu())).is_err() || last {
                parser.unpark();
                return;
            }
            sent += 1;
        }
    });
    let (mut sum, mut seen, mut bound) = (0u64, 0usize, false);
    loop {
        let got = if mode == Mode::Wake {
            rx.recv().ok()
        } else {
            match rx.try_recv() {
                Ok(b) => Some(b),
                Err(TryRecvError::Empty) if mode == Mode::Busy => {
                    // About ten microseconds of arithmetic between looks.
                    for _ in 0..10_000 {
                        sum = std::hint::black_box(
                            sum.wrapping_mul(6_364_136_223_846_793_005)
                                .wrapping_add(1_442_695_040_888_963_407),
                        );
                    }
                    continue;
                }
                Err(TryRecvError::Empty) => {
                    std::thread::park_timeout(POLL);
                    continue;
                }
                Err(TryRecvError::Disconnected) => None,
            }
        };
        let Some((block, reader_cpu)) = got else {
            break;
        };
        taken.fetch_add(1, Ordering::Relaxed);
        seen += block.len();
        if !bound && seen > SPREAD_AFTER && cpus > 1 {
            // The reader stays where it runs (it is not bound here: `pmap`
            // binds it too, but a reader that stays put is the same).
            bind((reader_cpu + 1) % cpus);
            bound = true;
            bound_apart.store(true, Ordering::Relaxed);
        }
        if mode == Mode::Touch {
            sum = block.chunks_exact(8).fold(sum, |s, w| {
                s.wrapping_add(u64::from_le_bytes(w.try_into().unwrap_or_default()))
            });
        }
        if let Ok(mut v) = spares.lock()
            && v.len() < DEPTH + 2
        {
            v.push(block);
        }
    }
    let _ = reader.join();
    // Keeps the sum (and so the reads of `touch`) from being optimised out.
    std::hint::black_box(sum);
}
