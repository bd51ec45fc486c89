//! `cargo xtask bench trace`: what `pmap trace` costs the traced process,
//! how many events per second it takes without loss, how late its deltas
//! are, what it costs itself on a 60,000-region process, and what processes
//! that are not traced pay while it runs.
//!
//! (a) is here; (b) and (c) in `rates`, (d) and (e) in `costs`.

use std::{fmt::Write, path::Path, time::Duration};

use anyhow::Result;

use super::{
    Bins, Opts, build, machine_description,
    report::Table,
    stats::{Samples, mib, ms, verdict},
    tracer::{Output, Tracer, TracerResult},
    workloads::{BPFTRACE, Bpftrace, Layout, Loop, LoopResult, ManyMaps, on_path, run_loop_plain},
};

mod costs;
mod rates;

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
    let target = ManyMaps::start(bins, 10, Layout::Anonymous).map_err(|e| format!("{e:#}"))?;
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
        rates::throughput(&mut s, &bins, alt, &plan, untraced_rate)?;
        costs::own_cost(&mut s, &bins, &plan)?;
    }
    costs::cost_to_others(&mut s, &bins, alt, &plan, &avail)?;
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
