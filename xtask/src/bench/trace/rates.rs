//! (b) Throughput without loss and (c) the latency from a syscall to its
//! delta, paced and flat out.

use super::*;

// ---------------------------------------------------------------------------
// (b) throughput and (c) latency

struct RateRun {
    label: String,
    target_rate: Option<f64>,
    ring: Option<u64>,
    loops: Vec<LoopResult>,
    tr: TracerResult,
}

impl RateRun {
    fn expected(&self) -> u64 {
        self.loops.iter().map(|l| 3 * l.iters).sum()
    }
    fn achieved(&self) -> f64 {
        self.loops.iter().map(LoopResult::syscall_rate).sum()
    }
    fn lost(&self) -> u64 {
        self.tr
            .lost_on_stderr()
            .max(self.tr.out.summary_lost().unwrap_or(0))
            .max(self.tr.out.lost_in_records)
    }
}

/// `rate` in iterations per second per loop (None: unpaced), for `secs`.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per kind of run; a struct would only rename them"
)]
fn rate_run(
    bins: &Bins,
    pmap: &Path,
    label: String,
    loops: usize,
    rate: Option<f64>,
    unpaced_iters: u64,
    secs: f64,
    ring: Option<u64>,
) -> Result<RateRun> {
    let args: Vec<String> = match rate {
        Some(r) => vec![
            "--rate".into(),
            format!("{r}"),
            "--duration".into(),
            format!("{secs}"),
        ],
        None => vec!["--iters".into(), unpaced_iters.to_string()],
    };
    let mut args = args;
    args.extend(["--keep".to_string(), KEEP.to_string()]);
    let ls: Vec<Loop> = (0..loops)
        .map(|_| Loop::start(bins, &args))
        .collect::<Result<_>>()?;
    let pids: Vec<u32> = ls.iter().map(Loop::pid).collect();
    let ring_arg = ring.map(|r| r.to_string());
    let mut targs: Vec<&str> = vec!["--no-initial-table"];
    if let Some(r) = &ring_arg {
        targs.extend(["--ring-size", r.as_str()]);
    }
    let t = Tracer::start(pmap, &targs, &pids, Output::Json)?;
    // Start every loop, then collect them (each runs in its own process).
    let handles: Vec<_> = ls
        .into_iter()
        .map(|l| std::thread::spawn(move || l.go()))
        .collect();
    let mut results = Vec::new();
    for h in handles {
        results.push(
            h.join()
                .map_err(|_| anyhow::anyhow!("a bench_loop driver thread panicked"))??,
        );
    }
    let tr = t.finish(Duration::from_secs(15))?;
    Ok(RateRun {
        label,
        target_rate: rate.map(|r| 3.0 * r * loops as f64),
        ring,
        loops: results,
        tr,
    })
}

pub(super) fn throughput(
    s: &mut String,
    bins: &Bins,
    alt: Option<&Path>,
    plan: &Plan,
    untraced_rate: f64,
) -> Result<()> {
    let unpaced_iters = if untraced_rate.is_finite() && untraced_rate > 0.0 {
        (untraced_rate * plan.rate_secs) as u64
    } else {
        100_000
    };
    let mut runs = Vec::new();
    // Paced rates, in iterations per second (3 syscalls each).
    let rates = [1_000.0, 10_000.0, 30_000.0, 60_000.0];
    eprintln!("bench: trace: throughput and latency");
    for &r in &rates {
        runs.push(rate_run(
            bins,
            &bins.pmap,
            format!("paced {} syscalls/s", 3.0 * r),
            1,
            Some(r),
            0,
            plan.rate_secs,
            None,
        )?);
    }
    runs.push(rate_run(
        bins,
        &bins.pmap,
        "1 loop, unpaced".into(),
        1,
        None,
        unpaced_iters,
        plan.rate_secs,
        None,
    )?);
    runs.push(rate_run(
        bins,
        &bins.pmap,
        "2 loops, unpaced".into(),
        2,
        None,
        unpaced_iters / 2,
        plan.rate_secs,
        None,
    )?);
    // Refine between the last paced rate without loss and the first with.
    let zero = |r: &RateRun| r.lost() == 0;
    if let Some(first_bad) = runs.iter().position(|r| r.ring.is_none() && !zero(r))
        && first_bad > 0
        && first_bad < rates.len()
    {
        let r = (rates[first_bad - 1] + rates[first_bad]) / 2.0;
        runs.push(rate_run(
            bins,
            &bins.pmap,
            format!("paced {} syscalls/s", 3.0 * r),
            1,
            Some(r),
            0,
            plan.rate_secs,
            None,
        )?);
    }
    // The --alt-pmap build at the latency rate and flat out.
    if let Some(a) = alt {
        for (label, rate) in [
            ("--alt-pmap: paced 3000 syscalls/s", Some(1_000.0)),
            ("--alt-pmap: 1 loop, unpaced", None),
        ] {
            runs.push(rate_run(
                bins,
                a,
                label.into(),
                1,
                rate,
                unpaced_iters,
                plan.rate_secs,
                None,
            )?);
        }
    }
    // What loss looks like: a ring of 4 pages under the unpaced loop.
    runs.push(rate_run(
        bins,
        &bins.pmap,
        "1 loop, unpaced, --ring-size 16384".into(),
        1,
        None,
        unpaced_iters,
        plan.rate_secs,
        Some(16384),
    )?);

    let _ = writeln!(
        s,
        "### (b) Throughput and (c) latency\n\n\
         `pmap trace --json --no-initial-table PID...` on `bench_loop --keep {KEEP}` running \
         paced (absolute schedule) or flat out for about {}s. Rates are map-changing syscalls \
         per second (3 per iteration), each one ring buffer event. With --keep each 16 KiB \
         mapping is unmapped {KEEP} iterations later; each call that changed the map has \
         its own `delta` (one per syscall, from the regions the kernel program read at the \
         call's exit; an older tracer printed about 2 per iteration). Latency: \
         CLOCK_MONOTONIC when the harness reads the `delta` line from the tracer's stdout \
         minus the record's `ktime_ns` (syscall exit). \"lost\" is the larger of the sum of \
         `pmap trace: lost N events` lines on stderr, the `lost` records and the summary.\n",
        plan.rate_secs
    );
    let mut t = Table::new(&[
        "run",
        "ring",
        "achieved syscalls/s",
        "deltas / syscalls",
        "lost",
        "resyncs",
        "corrections",
        "latency p50 ms",
        "p99 ms",
        "max ms",
        "tracer CPU ms",
    ]);
    for r in &runs {
        let lat = &r.tr.out.latency;
        t.row(vec![
            r.label.clone(),
            r.ring
                .map(|x| x.to_string())
                .unwrap_or_else(|| "default".into()),
            format!("{:.0}", r.achieved()),
            format!("{} / {}", r.tr.out.deltas, r.expected()),
            r.lost().to_string(),
            r.tr.stderr_count("resynchronising").to_string(),
            r.tr.out
                .summary_corrections()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "?".into()),
            ms(lat.percentile(50.0)),
            ms(lat.percentile(99.0)),
            ms(lat.max()),
            ms(r.tr.usage.cpu()),
        ]);
    }
    s.push_str(&t.render());
    s.push('\n');

    let ours = |r: &&RateRun| !r.label.starts_with("--alt-pmap");
    let best = runs
        .iter()
        .filter(ours)
        .filter(|r| r.ring.is_none() && r.lost() == 0)
        .map(RateRun::achieved)
        .fold(f64::NAN, f64::max);
    let first_loss = runs
        .iter()
        .filter(ours)
        .filter(|r| r.ring.is_none() && r.lost() > 0)
        .map(RateRun::achieved)
        .fold(f64::NAN, f64::min);
    let _ = writeln!(
        s,
        "- highest rate with zero loss at the default ring size: **{:.0} syscalls/s**{}",
        best,
        if first_loss.is_nan() {
            " (no run at the default ring size lost events; that is the most the loops reach here)"
                .to_string()
        } else {
            format!("; the lowest rate that lost events: {first_loss:.0} syscalls/s")
        }
    );
    for r in runs.iter().filter(|r| r.lost() > 0) {
        let _ = writeln!(
            s,
            "- {}: lost {} events, {} `lost` records, {} resync messages; stderr said: {}",
            r.label,
            r.lost(),
            r.tr.out.lost_records,
            r.tr.stderr_count("resynchronising"),
            r.tr.stderr
                .iter()
                .find(|l| l.contains("lost"))
                .map(|l| format!("`{l}`"))
                .unwrap_or_else(|| "(nothing about loss)".into())
        );
    }
    if let Some(r) = runs.iter().find(|r| r.target_rate == Some(3_000.0)) {
        let p99 = r.tr.out.latency.percentile(99.0) * 1e3;
        let _ = writeln!(
            s,
            "- latency at {:.0} syscalls/s: p50 {} ms, p99 {} ms over {} deltas; goal p99 < {GOAL_P99_MS} ms: {}",
            r.achieved(),
            ms(r.tr.out.latency.percentile(50.0)),
            ms(r.tr.out.latency.percentile(99.0)),
            r.tr.out.latency.len(),
            if p99.is_nan() {
                "not measured (no delta carried ktime_ns)"
            } else if p99 < GOAL_P99_MS {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    s.push('\n');
    Ok(())
}
