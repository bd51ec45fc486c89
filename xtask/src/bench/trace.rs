//! `cargo xtask bench trace`: what `pmap trace` costs the traced process,
//! how many events per second it takes without loss, how late its deltas
//! are, what it costs itself on a 60,000-region process, and what processes
//! that are not traced pay while it runs.

use std::{fmt::Write, path::Path, time::Duration};

use anyhow::Result;

use super::{
    Bins, Opts, build, machine_description,
    report::Table,
    stats::{Samples, mib, ms, verdict},
    tracer::{
        BPFTRACE, Bpftrace, Loop, LoopResult, ManyMaps, Output, Tracer, TracerResult, on_path,
        run_loop_plain,
    },
};

const GOAL_OVERHEAD: f64 = 1.15;
const GOAL_OVERHEAD_STACKS: f64 = 1.5;
const GOAL_P99_MS: f64 = 10.0;
const GOAL_RSS_MIB: f64 = 32.0;
/// bench_loop --keep for the rate runs: each mapping lives KEEP iterations,
/// long enough for the tracer to see it (it reports changes it can confirm
/// in the kernel, so a mapping already gone yields no delta).
const KEEP: usize = 2048;
const STRACE: &[&str] = &["strace", "-f", "-e", "trace=%memory", "-o", "/dev/null"];

/// Sizes and repetitions, full or `--quick`.
struct Plan {
    rounds: usize,
    iters: u64,
    strace_iters: u64,
    rate_secs: f64,
    churn_secs: f64,
    others_rounds: usize,
}

impl Plan {
    fn new(opts: &Opts) -> Plan {
        if opts.quick {
            Plan {
                rounds: opts.rounds_or(7, 3),
                iters: 50_000,
                strace_iters: 2_000,
                rate_secs: 1.5,
                churn_secs: 2.0,
                others_rounds: opts.rounds_or(5, 3),
            }
        } else {
            Plan {
                rounds: opts.rounds_or(7, 3),
                iters: 100_000,
                strace_iters: 5_000,
                rate_secs: 3.0,
                churn_secs: 5.0,
                others_rounds: opts.rounds_or(5, 3),
            }
        }
    }
}

/// Which tracers can run here, and why not when they cannot.
struct Avail {
    pmap: Result<(), String>,
    stacks: Result<(), String>,
    bpftrace: Result<(), String>,
    strace: Result<(), String>,
}

fn probe_tracer(bins: &Bins, args: &[&str]) -> Result<(), String> {
    if let Some(e) = &bins.pmap_build_error {
        return Err(format!("not built: {e}"));
    }
    let target = ManyMaps::start(bins, 10, None).map_err(|e| format!("{e:#}"))?;
    let t = Tracer::start(&bins.pmap, args, &[target.pid()], Output::Text)
        .map_err(|e| shorten(&format!("{e:#}")))?;
    t.finish(Duration::ZERO).map_err(|e| format!("{e:#}"))?;
    Ok(())
}

/// The first meaningful lines of an error, for a table cell.
fn shorten(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut out = lines
        .iter()
        .take(3)
        .copied()
        .collect::<Vec<_>>()
        .join(" / ");
    if out.len() > 300 {
        out.truncate(300);
        out.push('…');
    }
    out.replace('|', "\\|")
}

pub fn run(opts: &Opts) -> Result<String> {
    let bins = build(opts, true)?;
    let plan = Plan::new(opts);
    let machine = machine_description();
    eprintln!("bench: trace: checking which tracers work here");
    let avail = Avail {
        pmap: probe_tracer(&bins, &["--no-initial-table"]),
        stacks: probe_tracer(&bins, &["--no-initial-table", "--stacks"]),
        bpftrace: if on_path(BPFTRACE) {
            Ok(())
        } else {
            Err("bpftrace is not installed (Debian: apt-get install bpftrace)".into())
        },
        strace: if on_path("strace") {
            Ok(())
        } else {
            Err("strace is not installed".into())
        },
    };

    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Trace: `cargo xtask bench trace{}`\n",
        if opts.quick { " --quick" } else { "" }
    );
    s.push_str(&machine);
    for (name, a) in [
        ("pmap trace", &avail.pmap),
        ("pmap trace --stacks", &avail.stacks),
        ("bpftrace", &avail.bpftrace),
        ("strace", &avail.strace),
    ] {
        if let Err(e) = a {
            let _ = writeln!(s, "- {name}: not measured: {e}");
        }
    }
    s.push('\n');

    let alt = opts.alt_pmap.as_deref();
    if let Some(a) = alt {
        let _ = writeln!(s, "- --alt-pmap: {}\n", a.display());
    }
    let untraced_rate = overhead(&mut s, &bins, alt, &plan, &avail)?;
    if avail.pmap.is_ok() {
        throughput(&mut s, &bins, alt, &plan, untraced_rate)?;
        own_cost(&mut s, &bins, &plan)?;
    }
    others(&mut s, &bins, alt, &plan, &avail)?;
    Ok(s)
}

// ---------------------------------------------------------------------------
// (a) overhead

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cfg {
    Untraced,
    Pmap,
    PmapStacks,
    PmapAlt,
    /// `--alt-pmap` with `--stacks`: a before/after of `--stacks` in one run.
    PmapAltStacks,
    Bpftrace,
    SmallUntraced,
    SmallStrace,
}

impl Cfg {
    fn label(self) -> &'static str {
        match self {
            Cfg::Untraced => "untraced",
            Cfg::Pmap => "pmap trace PID",
            Cfg::PmapStacks => "pmap trace --stacks PID",
            Cfg::PmapAlt => "--alt-pmap: trace PID",
            Cfg::PmapAltStacks => "--alt-pmap: trace --stacks PID",
            Cfg::Bpftrace => "bpftrace, 6 counting tracepoints",
            Cfg::SmallUntraced => "untraced (strace's N)",
            Cfg::SmallStrace => "strace -f -e trace=%memory",
        }
    }

    /// The configuration its ratio is taken against.
    fn baseline(self) -> Cfg {
        match self {
            Cfg::SmallUntraced | Cfg::SmallStrace => Cfg::SmallUntraced,
            _ => Cfg::Untraced,
        }
    }
}

#[derive(Default)]
struct CfgData {
    unavailable: Option<String>,
    iters: u64,
    elapsed: Samples,
    loop_sys: Samples,
    /// user+sys of the loop process.
    loop_cpu: Samples,
    /// Loop CPU plus the tracer's CPU, per run.
    total_cpu: Samples,
    /// Preemptions of the loop process.
    loop_preempt: Samples,
    tracer_cpu: Samples,
    /// The tracer's voluntary context switches (sleeps, then wake-ups).
    tracer_wakeups: Samples,
    tracer_hwm: Samples,
    /// Events the tracer reported seeing, per run.
    seen: Samples,
    lost: u64,
    interrupted: usize,
}

/// Runs one configuration once.
fn run_cfg(bins: &Bins, alt: Option<&Path>, plan: &Plan, cfg: Cfg, d: &mut CfgData) -> Result<()> {
    let iters = match cfg {
        Cfg::SmallUntraced | Cfg::SmallStrace => plan.strace_iters,
        _ => plan.iters,
    };
    d.iters = iters;
    let args = vec!["--iters".to_string(), iters.to_string()];
    let push_loop = |d: &mut CfgData, r: &LoopResult| {
        d.elapsed.push(r.elapsed);
        d.loop_sys.push(r.usage.sys);
        d.loop_cpu.push(r.usage.cpu());
        d.loop_preempt.push(r.nivcsw as f64);
    };
    match cfg {
        Cfg::Untraced => {
            let r = Loop::start(bins, &args)?.go()?;
            push_loop(d, &r);
        }
        Cfg::Pmap | Cfg::PmapStacks | Cfg::PmapAlt | Cfg::PmapAltStacks => {
            let l = Loop::start(bins, &args)?;
            let targs: &[&str] = if matches!(cfg, Cfg::PmapStacks | Cfg::PmapAltStacks) {
                &["--stacks"]
            } else {
                &[]
            };
            let bin = match (cfg, alt) {
                (Cfg::PmapAlt | Cfg::PmapAltStacks, Some(a)) => a,
                _ => bins.pmap.as_path(),
            };
            let t = Tracer::start(bin, targs, &[l.pid()], Output::Text)?;
            let r = l.go()?;
            let tr = t.finish(Duration::from_secs(15))?;
            push_loop(d, &r);
            record_tracer(d, &tr);
        }
        Cfg::Bpftrace => {
            let l = Loop::start(bins, &args)?;
            let b = Bpftrace::start(l.pid())?;
            let r = l.go()?;
            let (count, u) = b.finish()?;
            push_loop(d, &r);
            d.tracer_cpu.push(u.cpu());
            d.tracer_wakeups.push(u.nvcsw as f64);
            d.seen.push(count as f64);
        }
        Cfg::SmallUntraced => {
            let r = run_loop_plain(bins, &[], &args)?;
            push_loop(d, &r);
        }
        Cfg::SmallStrace => {
            let r = run_loop_plain(bins, STRACE, &args)?;
            push_loop(d, &r);
        }
    }
    // This run's loop CPU plus its tracer's CPU (if it had one).
    let n = d.loop_cpu.len();
    let loop_cpu = d.loop_cpu.values().last().copied().unwrap_or(f64::NAN);
    let tracer = if d.tracer_cpu.len() == n {
        d.tracer_cpu.values().last().copied().unwrap_or(0.0)
    } else {
        0.0
    };
    d.total_cpu.push(loop_cpu + tracer);
    Ok(())
}

fn record_tracer(d: &mut CfgData, tr: &TracerResult) {
    d.tracer_cpu.push(tr.usage.cpu());
    d.tracer_wakeups.push(tr.usage.nvcsw as f64);
    d.tracer_hwm.push(tr.hwm_kib);
    let seen: Option<u64> = ["mmap", "mprotect", "munmap"]
        .iter()
        .map(|n| tr.out.summary_calls(n))
        .sum();
    d.seen.push(seen.map(|v| v as f64).unwrap_or(f64::NAN));
    d.lost += tr.out.summary_lost().unwrap_or(0).max(tr.lost_on_stderr());
    if tr.interrupted {
        d.interrupted += 1;
    }
}

/// The median of the per-round ratios of `a` to `b` (rounds paired).
pub(super) fn paired(a: &Samples, b: &Samples) -> f64 {
    let mut s = Samples::default();
    for (&x, &y) in a.values().iter().zip(b.values()) {
        if y > 0.0 {
            s.push(x / y);
        }
    }
    s.median()
}

/// `1.23x`, or `n/a`.
pub(super) fn fx(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else {
        format!("{v:.2}x")
    }
}

/// Returns the untraced loop's iterations per second (median).
fn overhead(
    s: &mut String,
    bins: &Bins,
    alt: Option<&Path>,
    plan: &Plan,
    avail: &Avail,
) -> Result<f64> {
    let cfgs = [
        Cfg::Untraced,
        Cfg::Pmap,
        Cfg::PmapStacks,
        Cfg::PmapAlt,
        Cfg::PmapAltStacks,
        Cfg::Bpftrace,
        Cfg::SmallUntraced,
        Cfg::SmallStrace,
    ];
    let mut data: Vec<CfgData> = cfgs.iter().map(|_| CfgData::default()).collect();
    for (c, d) in cfgs.iter().zip(&mut data) {
        d.unavailable = match c {
            Cfg::Pmap => avail.pmap.clone().err(),
            Cfg::PmapStacks => avail.stacks.clone().err(),
            Cfg::PmapAlt | Cfg::PmapAltStacks => {
                alt.is_none().then(|| "no --alt-pmap given".to_string())
            }
            Cfg::Bpftrace => avail.bpftrace.clone().err(),
            Cfg::SmallStrace => avail.strace.clone().err(),
            _ => None,
        };
    }
    let live: Vec<usize> = (0..cfgs.len())
        .filter(|&i| data[i].unavailable.is_none())
        .collect();
    eprintln!(
        "bench: trace: overhead, {} rounds of {} configurations",
        plan.rounds,
        live.len()
    );
    for r in 0..plan.rounds {
        for k in 0..live.len() {
            let i = live[(k + r) % live.len()];
            run_cfg(bins, alt, plan, cfgs[i], &mut data[i])?;
        }
    }

    let get = |c: Cfg| &data[cfgs.iter().position(|x| *x == c).unwrap_or(0)];
    let _ = writeln!(
        s,
        "### (a) Overhead on the traced process\n\n\
         bench_loop: N × (mmap 16 KiB, touch 4 pages, mprotect 4 KiB, munmap): 3 traced \
         syscalls per iteration. Wall time of the loop as bench_loop measures it; all \
         configurations interleaved round-robin, {} rounds. The tracer is attached before the \
         loop starts (`--wait`); `pmap trace` writes its text output into a pipe read by the \
         harness. Ratios are medians of per-round ratios against the untraced run of the same \
         round and N. Loop CPU is user+sys of the loop process (the kernel programs run in its \
         syscalls, so their cost lands there); loop+tracer adds the tracer's own CPU: on a \
         loaded machine these CPU ratios are steadier than wall time. Loop preemptions: involuntary context switches of the loop process; \
         tracer wake-ups: its voluntary context switches (each a sleep waiting for events). \
         \"events seen\" is what the tracer counted (pmap: mmap+mprotect+munmap \
         calls in its summary; bpftrace: hits of its 6 probes).\n",
        plan.rounds
    );
    let mut t = Table::new(&[
        "configuration",
        "N",
        "loop median ms",
        "loop min ms",
        "ratio vs untraced",
        "loop CPU ms",
        "loop CPU ratio",
        "loop+tracer CPU ratio",
        "loop sys ms",
        "loop preemptions",
        "tracer CPU ms",
        "tracer CPU µs/syscall",
        "tracer wake-ups",
        "tracer peak RSS MiB",
        "events seen per run",
        "lost",
    ]);
    for (c, d) in cfgs.iter().zip(&data) {
        if matches!(c, Cfg::PmapAlt | Cfg::PmapAltStacks) && alt.is_none() {
            continue;
        }
        if d.unavailable.is_some() {
            t.row(vec![c.label().into(), "not measured (see above)".into()]);
            continue;
        }
        let base = get(c.baseline());
        let ratio = if *c == c.baseline() {
            String::new()
        } else {
            fx(paired(&d.elapsed, &base.elapsed))
        };
        let per_call = d.tracer_cpu.median() * 1e6 / (3.0 * d.iters as f64);
        t.row(vec![
            c.label().into(),
            d.iters.to_string(),
            ms(d.elapsed.median()),
            ms(d.elapsed.min()),
            ratio,
            ms(d.loop_cpu.median()),
            if *c == c.baseline() || *c == Cfg::SmallStrace {
                String::new()
            } else {
                fx(paired(&d.loop_cpu, &base.loop_cpu))
            },
            if *c == c.baseline() || *c == Cfg::SmallStrace {
                String::new()
            } else {
                fx(paired(&d.total_cpu, &base.loop_cpu))
            },
            ms(d.loop_sys.median()),
            format!("{:.0}", d.loop_preempt.median()),
            ms(d.tracer_cpu.median()),
            if d.tracer_cpu.is_empty() {
                String::new()
            } else {
                format!("{per_call:.2}")
            },
            if d.tracer_wakeups.is_empty() {
                String::new()
            } else {
                format!("{:.0}", d.tracer_wakeups.median())
            },
            if d.tracer_hwm.is_empty() {
                String::new()
            } else {
                mib(d.tracer_hwm.max())
            },
            if d.seen.is_empty() {
                String::new()
            } else {
                format!("{:.0}", d.seen.median())
            },
            if matches!(
                c,
                Cfg::Pmap | Cfg::PmapStacks | Cfg::PmapAlt | Cfg::PmapAltStacks
            ) {
                format!(
                    "{}{}",
                    d.lost,
                    if d.interrupted > 0 {
                        format!(" ({} runs had to be stopped by SIGINT)", d.interrupted)
                    } else {
                        String::new()
                    }
                )
            } else {
                String::new()
            },
        ]);
    }
    s.push_str(&t.render());
    s.push('\n');

    let mut g = Table::new(&[
        "goal",
        "target",
        "wall ratio",
        "verdict (wall)",
        "loop CPU ratio",
        "loop+tracer CPU ratio",
    ]);
    let un = get(Cfg::Untraced);
    for (c, goal) in [
        (Cfg::Pmap, GOAL_OVERHEAD),
        (Cfg::PmapStacks, GOAL_OVERHEAD_STACKS),
    ] {
        let d = get(c);
        let ok = d.unavailable.is_none();
        let r = if ok {
            paired(&d.elapsed, &un.elapsed)
        } else {
            f64::NAN
        };
        let (rc, rt) = if ok {
            (
                paired(&d.loop_cpu, &un.loop_cpu),
                paired(&d.total_cpu, &un.loop_cpu),
            )
        } else {
            (f64::NAN, f64::NAN)
        };
        g.row(vec![
            format!("{} / untraced", c.label()),
            format!("<= {goal}x"),
            fx(r),
            verdict(r, goal).into(),
            fx(rc),
            fx(rt),
        ]);
    }
    s.push_str(&g.render());
    s.push('\n');
    Ok(un.iters as f64 / un.elapsed.median())
}

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

fn throughput(
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

// ---------------------------------------------------------------------------
// (d) the tracer's own cost on 60,000 regions

fn own_cost(s: &mut String, bins: &Bins, plan: &Plan) -> Result<()> {
    eprintln!("bench: trace: own cost on 60,000 regions");
    let mut t = Table::new(&[
        "run",
        "regions",
        "startup s (spawn → tracing)",
        "startup CPU ms",
        "tables printed",
        "events",
        "total CPU ms",
        "CPU µs/event (after startup)",
        "RSS after startup MiB",
        "peak RSS MiB",
        "lost",
        "corrections",
    ]);
    let mut worst_rss = f64::NAN;
    for (label, flags, churn) in [
        ("idle, 3 × SIGUSR1", vec![], None),
        ("idle, -X, 3 × SIGUSR1", vec!["-X"], None),
        ("churn 2,000 mprotect/s, 1 × SIGUSR1", vec![], Some(2_000.0)),
    ] {
        let mut mm = ManyMaps::start(bins, 60_000, churn)?;
        let tr = Tracer::start(&bins.pmap, &flags, &[mm.pid()], Output::Text)?;
        if churn.is_some() {
            mm.go()?;
            std::thread::sleep(Duration::from_secs_f64(plan.churn_secs));
            tr.signal(libc::SIGUSR1);
            std::thread::sleep(Duration::from_millis(700));
        } else {
            for _ in 0..3 {
                std::thread::sleep(Duration::from_millis(700));
                tr.signal(libc::SIGUSR1);
            }
            std::thread::sleep(Duration::from_millis(1500));
        }
        let r = tr.finish(Duration::ZERO)?;
        let events = r.out.summary_calls("mprotect").unwrap_or(0);
        let after = r.usage.cpu() - r.startup_cpu;
        worst_rss = if worst_rss.is_nan() {
            r.hwm_kib
        } else {
            worst_rss.max(r.hwm_kib)
        };
        t.row(vec![
            label.into(),
            mm.regions.to_string(),
            format!("{:.2}", r.startup),
            ms(r.startup_cpu),
            r.out.tables.to_string(),
            events.to_string(),
            ms(r.usage.cpu()),
            if events > 0 {
                format!("{:.1}", after * 1e6 / events as f64)
            } else {
                String::new()
            },
            mib(r.startup_hwm_kib),
            mib(r.hwm_kib),
            r.out
                .summary_lost()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into()),
            r.out
                .summary_corrections()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into()),
        ]);
    }
    let _ = writeln!(
        s,
        "### (d) The tracer's own cost on a process with 60,000 regions\n\n\
         `pmap trace [-X] PID` on many_maps (alternating r--/rw- pages). Peak RSS is the \
         tracer's VmHWM sampled every 20 ms from /proc (its own address space only). \
         Each table (initial, one per SIGUSR1, final) is a full table of ~60k lines plus the \
         model check against the kernel. The churn run toggles one page's protection {} \
         times per second (each a merge 3 → 1 or a split 1 → 3) for {}s.\n",
        2_000, plan.churn_secs
    );
    s.push_str(&t.render());
    s.push('\n');
    let _ = writeln!(
        s,
        "- peak RSS goal <= {GOAL_RSS_MIB} MiB: {} MiB, {}\n",
        mib(worst_rss),
        verdict(worst_rss / 1024.0, GOAL_RSS_MIB)
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// (e) what untraced processes pay

fn others(
    s: &mut String,
    bins: &Bins,
    alt: Option<&Path>,
    plan: &Plan,
    avail: &Avail,
) -> Result<()> {
    #[derive(Clone, Copy, PartialEq)]
    enum O {
        None,
        Pmap,
        Alt,
        Bpftrace,
    }
    let mut cfgs = vec![O::None];
    if avail.pmap.is_ok() {
        cfgs.push(O::Pmap);
    }
    if alt.is_some() {
        cfgs.push(O::Alt);
    }
    if avail.bpftrace.is_ok() {
        cfgs.push(O::Bpftrace);
    }
    let mut data: Vec<Samples> = cfgs.iter().map(|_| Samples::default()).collect();
    let mut sys: Vec<Samples> = cfgs.iter().map(|_| Samples::default()).collect();
    let mut cpu: Vec<Samples> = cfgs.iter().map(|_| Samples::default()).collect();
    let other = ManyMaps::start(bins, 1_000, None)?;
    let args = vec!["--iters".to_string(), plan.iters.to_string()];
    eprintln!(
        "bench: trace: cost to untraced processes, {} rounds",
        plan.others_rounds
    );
    for r in 0..plan.others_rounds {
        for k in 0..cfgs.len() {
            let i = (k + r) % cfgs.len();
            let res = match cfgs[i] {
                O::None => Loop::start(bins, &args)?.go()?,
                O::Pmap | O::Alt => {
                    let bin = match (cfgs[i], alt) {
                        (O::Alt, Some(a)) => a,
                        _ => bins.pmap.as_path(),
                    };
                    let t = Tracer::start(bin, &[], &[other.pid()], Output::Text)?;
                    let res = Loop::start(bins, &args)?.go()?;
                    t.finish(Duration::ZERO)?;
                    res
                }
                O::Bpftrace => {
                    let b = Bpftrace::start(other.pid())?;
                    let res = Loop::start(bins, &args)?.go()?;
                    b.finish()?;
                    res
                }
            };
            data[i].push(res.elapsed);
            sys[i].push(res.usage.sys);
            cpu[i].push(res.usage.cpu());
        }
    }
    let _ = writeln!(
        s,
        "### (e) What processes that are not traced pay\n\n\
         bench_loop (N = {}) untraced, while nothing traces, while `pmap trace` traces another \
         (idle) process, and while bpftrace counts the same six tracepoints for that other \
         process. Syscall tracepoints are global: every task entering these syscalls runs the \
         programs, which drop other processes' events in the kernel. {} rounds, interleaved.\n",
        plan.iters, plan.others_rounds
    );
    let mut t = Table::new(&[
        "while",
        "loop median ms",
        "loop min ms",
        "ratio vs nothing",
        "loop CPU ms",
        "CPU ratio vs nothing",
        "loop sys ms",
    ]);
    for (i, c) in cfgs.iter().enumerate() {
        t.row(vec![
            match c {
                O::None => "nothing traces",
                O::Pmap => "pmap trace OTHER_PID",
                O::Alt => "--alt-pmap: trace OTHER_PID",
                O::Bpftrace => "bpftrace on OTHER_PID",
            }
            .into(),
            ms(data[i].median()),
            ms(data[i].min()),
            if i == 0 {
                String::new()
            } else {
                fx(paired(&data[i], &data[0]))
            },
            ms(cpu[i].median()),
            if i == 0 {
                String::new()
            } else {
                fx(paired(&cpu[i], &cpu[0]))
            },
            ms(sys[i].median()),
        ]);
    }
    if avail.pmap.is_err() {
        t.row(vec![
            "pmap trace OTHER_PID".into(),
            "not measured (see above)".into(),
        ]);
    }
    s.push_str(&t.render());
    s.push('\n');
    drop(other);
    Ok(())
}
