//! trace_workload: a seeded random sequence of memory-map changes for the
//! `pmap trace` exactness tests.
//!
//! ```text
//! trace_workload --seed N --ops N --checkpoint-every N [--start stdin|stop|now] [--delay-us N] [--log-ops] [--no-stack-growth]
//! ```
//!
//! It sets up its files, memfds and SysV segments, then waits for a line on
//! stdin (`--start stdin`, the default; EOF works too) or for SIGCONT after
//! stopping itself (`--start stop`), so that a harness can attach the tracer
//! first. Then it runs `--ops` operations chosen by the seed; after every
//! `--checkpoint-every` of them, with no operation in flight on any thread,
//! it stops itself with SIGSTOP so that the harness can compare the tracer's
//! table with `pmap` of the stopped process. It checkpoints once more before
//! the first operation and after cleaning everything up, then exits 0 and
//! prints per-op counts on stderr (`trace_workload: op NAME done D failed F
//! skipped S`).
//!
//! The choice of operations is a function of the seed; addresses, and the
//! success of the few calls whose outcome depends on them (growing in place),
//! are not.

mod blocks;
mod ops;
mod resources;
mod sys;
mod threads;
mod world;

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use ops::{MAX_BLOCKS, Op, Outcome};
use pmap_tests::rng::Rng;
use threads::Worker;
use world::World;

const MAX_WORKERS: usize = 4;
/// Stack growth stops at this depth (frames of about 32 KiB: a few MiB,
/// well inside the default 8 MiB limit).
const MAX_STACK_DEPTH: usize = 100;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    Stdin,
    Stop,
    Now,
}

struct Args {
    seed: u64,
    ops: u64,
    checkpoint_every: u64,
    start: Start,
    delay_us: u64,
    /// Print each op and its outcome on stderr (to find which op a tracer gets wrong).
    log_ops: bool,
    /// After each op, check the bookkeeping against /proc/self/maps (a test of the workload).
    verify: bool,
    /// Never grow the main stack: every change is then a traced call (for
    /// `pmap replay --at`, which sees only those).
    no_stack_growth: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        seed: 1,
        ops: 10_000,
        checkpoint_every: 500,
        start: Start::Stdin,
        delay_us: 0,
        log_ops: false,
        verify: false,
        no_stack_growth: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--seed" => a.seed = num(value()?)?,
            "--ops" => a.ops = num(value()?)?,
            "--checkpoint-every" => a.checkpoint_every = num(value()?)?.max(1),
            "--delay-us" => a.delay_us = num(value()?)?,
            "--log-ops" => a.log_ops = true,
            "--verify" => a.verify = true,
            "--no-stack-growth" => a.no_stack_growth = true,
            "--start" => {
                a.start = match value()?.as_str() {
                    "stdin" => Start::Stdin,
                    "stop" => Start::Stop,
                    "now" => Start::Now,
                    other => return Err(format!("--start {other}: expected stdin, stop or now")),
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// Relative weights of the ops given the current state.
fn weights(world: &World, workers: usize, stack_depth: usize) -> Vec<(Op, u32)> {
    let blocks = world.blocks.list.len();
    let crowded = blocks * 4 >= MAX_BLOCKS * 3;
    let map = if crowded { 2 } else { 10 };
    let unmap = if crowded { 14 } else { 5 };
    vec![
        (Op::MapAnon, map),
        (Op::MapAnonShared, map / 2),
        (Op::MapFile, map),
        (Op::MapMemfd, map / 2),
        (Op::ShmAttach, 3),
        (Op::ShmDetach, 3),
        (Op::FixedOverlay, 6),
        (Op::MunmapPart, unmap),
        (Op::MunmapWhole, unmap),
        (Op::Mprotect, 12),
        (Op::PkeyMprotect, 3),
        (Op::MremapGrowInPlace, 4),
        (Op::MremapGrowMaymove, 4),
        (Op::MremapShrink, 4),
        (Op::MremapMoveFixed, 4),
        (Op::MremapDontunmap, 3),
        (Op::BrkGrow, 3),
        (Op::BrkShrink, 3),
        (Op::Madvise, 8),
        (Op::Mlock, 3),
        (Op::Munlock, 3),
        (Op::Touch, 8),
        (Op::Dlopen, 1),
        (Op::Dlclose, 1),
        (Op::Mseal, 1),
        (Op::Burst, 1),
        (
            Op::StackGrow,
            if stack_depth < MAX_STACK_DEPTH { 2 } else { 0 },
        ),
        (Op::ThreadStart, if workers < MAX_WORKERS { 2 } else { 0 }),
        (Op::ThreadEnd, if workers > 0 { 2 } else { 0 }),
    ]
}

fn choose(rng: &mut Rng, w: &[(Op, u32)]) -> Op {
    let total: u64 = w.iter().map(|&(_, x)| u64::from(x)).sum();
    let mut r = rng.next_u64() % total;
    for &(op, x) in w {
        if r < u64::from(x) {
            return op;
        }
        r -= u64::from(x);
    }
    w[0].0
}

fn wait_for_start(start: Start) {
    match start {
        Start::Stdin => {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
        }
        Start::Stop => sys::stop_self(),
        Start::Now => {}
    }
}

fn run(args: &Args) -> Result<(), String> {
    resources::install_sigterm_cleanup();
    let mut rng = Rng::new(args.seed);
    let res = resources::Resources::setup()?;
    let world = Arc::new(Mutex::new(World {
        blocks: Default::default(),
        res,
        stats: Default::default(),
        sealed: 0,
    }));
    {
        let mut w = world.lock().expect("world lock");
        let unlinked = w
            .res
            .files
            .iter()
            .position(|f| f.unlink_after_start)
            .expect("an unlinked file");
        w.map_whole_file(unlinked)?;
        w.anchor_shm()?;
    }

    wait_for_start(args.start);
    {
        // Unlinked while mapped: from now on its regions end in " (deleted)".
        let w = world.lock().expect("world lock");
        for f in w.res.files.iter().filter(|f| f.unlink_after_start) {
            std::fs::remove_file(&f.path)
                .map_err(|e| format!("unlinking {}: {e}", f.path.display()))?;
        }
    }
    sys::stop_self();

    let mut workers: Vec<Worker> = Vec::new();
    let mut stack_depth = 4;
    let mut main_stats = ops::Stats::default();
    for i in 1..=args.ops {
        let op = {
            let w = world.lock().expect("world lock");
            // (At the deepest depth the stack grows no more.)
            let depth = if args.no_stack_growth {
                MAX_STACK_DEPTH
            } else {
                stack_depth
            };
            choose(&mut rng, &weights(&w, workers.len(), depth))
        };
        let seed = rng.next_u64();
        let delegate = !op.main_only() && !workers.is_empty() && rng.chance(1, 4);
        let which = rng.next_u64() as usize;
        let out = match op {
            Op::Burst => {
                threads::burst(&mut Rng::new(seed));
                Outcome::Done
            }
            Op::StackGrow => {
                stack_depth = (stack_depth + 1 + (seed % 8) as usize).min(MAX_STACK_DEPTH);
                threads::grow_stack(stack_depth);
                Outcome::Done
            }
            Op::ThreadStart => match Worker::spawn(&world, &mut Rng::new(seed)) {
                Ok(wk) => {
                    workers.push(wk);
                    Outcome::Done
                }
                Err(e) => {
                    eprintln!("trace_workload: {e}");
                    Outcome::Failed(0)
                }
            },
            Op::ThreadEnd => {
                workers.swap_remove(which % workers.len()).stop();
                Outcome::Done
            }
            _ if delegate => workers[which % workers.len()].run(op, seed),
            _ => world
                .lock()
                .expect("world lock")
                .apply(op, &mut Rng::new(seed)),
        };
        if op.main_only() {
            main_stats.record(op, out);
        }
        if args.verify {
            let bad = world.lock().expect("world lock").verify();
            if !bad.is_empty() {
                return Err(format!(
                    "after op #{i} {} ({out:?}): {}",
                    op.name(),
                    bad.join("; ")
                ));
            }
        }
        if args.log_ops {
            eprintln!("trace_workload: #{i} {} {out:?}", op.name());
        }
        if args.delay_us > 0 {
            std::thread::sleep(std::time::Duration::from_micros(args.delay_us));
        }
        if i % args.checkpoint_every == 0 {
            sys::stop_self();
        }
    }

    for wk in workers.drain(..) {
        wk.stop();
    }
    let mut w = world.lock().expect("world lock");
    w.cleanup();
    sys::stop_self();

    for (name, c) in &main_stats.by_op {
        w.stats.by_op.insert(name, *c);
    }
    eprintln!("trace_workload: seed {} ops {} done", args.seed, args.ops);
    for op in Op::ALL {
        let [d, f, s] = w.stats.by_op.get(op.name()).copied().unwrap_or_default();
        eprintln!(
            "trace_workload: op {} done {d} failed {f} skipped {s}",
            op.name()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("trace_workload: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trace_workload: {e}");
            ExitCode::FAILURE
        }
    }
}
