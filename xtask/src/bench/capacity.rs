//! `cargo xtask bench capacity`: what the tracer spends per event, flat
//! out, in JSON, on a map of about 4,000 regions (issue 11's measure).
//!
//! bench_loop maps, touches, re-protects and unmaps as fast as it can,
//! keeping 2,048 mappings alive, while `pmap trace --json` (attach mode,
//! output read through a pipe as a consumer would) follows it. The
//! tracer's CPU after its start-up (loading the programs, the initial
//! table) divided by the delta records it wrote is its cost per event;
//! one core's worth of events per second is its capacity. With
//! `--alt-pmap BIN`, another build runs in the same rounds, interleaved,
//! and the ratio is paired by round.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::{Result, bail};

use super::{
    Bins, Opts, build, machine_description,
    report::Table,
    stats::Samples,
    tracer::{Output, Tracer},
    workloads::Loop,
};

/// Mappings kept alive by the loop: with the process's own, about 4,000
/// regions.
const KEEP: usize = 2048;

#[derive(Default)]
struct Runs {
    /// Tracer CPU per delta record, microseconds.
    us_per_event: Samples,
    /// Delta records written.
    events: Samples,
    /// Map-changing syscalls per second the loop made.
    rate: Samples,
    lost: u64,
}

pub fn run(opts: &Opts) -> Result<String> {
    let bins = build(opts, true)?;
    if let Some(e) = &bins.pmap_build_error {
        bail!("pmap could not be built: {e}");
    }
    let rounds = opts.rounds_or(7, 3);
    let iters: u64 = if opts.quick { 100_000 } else { 300_000 };
    let mut tracers: Vec<(String, &Path)> = vec![("pmap (this build)".into(), &bins.pmap)];
    if let Some(alt) = &opts.alt_pmap {
        tracers.push((format!("--alt-pmap {}", alt.display()), alt));
    }
    let mut runs: Vec<Runs> = tracers.iter().map(|_| Runs::default()).collect();
    eprintln!(
        "bench: capacity: {rounds} rounds of {iters} loop iterations per tracer, interleaved"
    );
    for r in 0..rounds {
        for k in 0..tracers.len() {
            let i = (k + r) % tracers.len();
            one_run(&bins, tracers[i].1, iters, &mut runs[i])?;
        }
    }

    let mut s = String::new();
    let _ = writeln!(s, "## pmap trace: tracer capacity, flat out, --json\n");
    s.push_str(&machine_description());
    let _ = writeln!(
        s,
        "- reproduce: `cargo xtask bench capacity{}{}`",
        if opts.quick { " --quick" } else { "" },
        if opts.alt_pmap.is_some() {
            " --alt-pmap OLD"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "- method: bench_loop --iters {iters} --keep {KEEP} (about 4,000 regions) flat out, \
         `pmap trace --json PID` attached, its output read through a pipe; the tracer's CPU \
         (user+sys) after its `tracing` line, divided by the delta records it wrote. \
         {rounds} rounds, tracers interleaved; medians, and the ratio paired by round.\n"
    );
    let mut t = Table::new(&[
        "tracer",
        "µs per event (median)",
        "min-max",
        "events per run",
        "loop syscalls/s",
        "one core's events/s",
        "lost",
    ]);
    for ((name, _), r) in tracers.iter().zip(&runs) {
        let us = r.us_per_event.median();
        t.row(vec![
            name.clone(),
            format!("{us:.2}"),
            format!("{:.2}-{:.2}", r.us_per_event.min(), r.us_per_event.max()),
            format!("{:.0}", r.events.median()),
            format!("{:.0}", r.rate.median()),
            format!("{:.0}", 1e6 / us),
            r.lost.to_string(),
        ]);
    }
    s.push_str(&t.render());
    if runs.len() == 2 {
        let ratio = super::trace::paired(&runs[0].us_per_event, &runs[1].us_per_event);
        let _ = writeln!(
            s,
            "\nThis build's cost per event against the other's, paired by round: {ratio:.2}x \
             (capacity {:.2}x).",
            1.0 / ratio
        );
    }
    Ok(s)
}

fn one_run(bins: &Bins, pmap: &Path, iters: u64, into: &mut Runs) -> Result<()> {
    let args = vec![
        "--iters".to_string(),
        iters.to_string(),
        "--keep".to_string(),
        KEEP.to_string(),
    ];
    let lp = Loop::start(bins, &args)?;
    let tracer = Tracer::start(pmap, &[], &[lp.pid()], Output::Json)?;
    let res = lp.go()?;
    let tr = tracer.finish(Duration::from_secs(30))?;
    if !tr.usage.success() && !tr.interrupted {
        bail!(
            "pmap trace failed ({}): {}",
            tr.usage.describe_status(),
            tr.stderr.join("\n")
        );
    }
    let events = tr.out.deltas;
    if events == 0 {
        bail!("pmap trace wrote no deltas: {}", tr.stderr.join("\n"));
    }
    let cpu = tr.usage.cpu() - tr.startup_cpu;
    into.us_per_event.push(cpu * 1e6 / events as f64);
    into.events.push(events as f64);
    into.rate.push(res.syscall_rate());
    // In JSON the tracer says a loss twice: on stderr and as a record.
    into.lost += tr.lost_on_stderr().max(tr.out.lost_in_records);
    Ok(())
}
