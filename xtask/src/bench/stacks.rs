//! `cargo xtask bench stacks`: what `pmap trace --stacks` costs the traced
//! mapping loop, side by side in one run: untraced, traced without stacks,
//! with the frame-pointer walk only (`--stack-bytes 0`), and with stack
//! copies of 1, 4, 8 (the default) and 16 KiB for DWARF unwinding. With
//! `--alt-pmap BIN`, also that binary's `--stacks` (a before/after).

use std::{fmt::Write, path::Path, time::Duration};

use anyhow::Result;

use super::{
    Bins, Opts, build, machine_description,
    report::Table,
    stats::{Samples, ms, verdict},
    trace::{fx, paired},
    tracer::{Output, Tracer},
    workloads::Loop,
};

/// The goal of issue 16: `--stacks` (default stack copy) within 1.5x of
/// the untraced loop.
const GOAL: f64 = 1.5;

/// One configuration: a label and the tracer's arguments (`None`:
/// untraced); `alt`: run `--alt-pmap`'s binary.
struct Cfg {
    label: String,
    args: Option<Vec<String>>,
    alt: bool,
}

#[derive(Default)]
struct Data {
    elapsed: Samples,
    loop_cpu: Samples,
    tracer_cpu: Samples,
    seen: Samples,
    lost: u64,
}

fn configs(alt: bool) -> Vec<Cfg> {
    let traced = |label: &str, args: &[&str]| Cfg {
        label: label.into(),
        args: Some(args.iter().map(|s| s.to_string()).collect()),
        alt: false,
    };
    let mut v = vec![
        Cfg {
            label: "untraced".into(),
            args: None,
            alt: false,
        },
        traced("pmap trace PID (no stacks)", &[]),
        traced(
            "--stacks --stack-bytes 0 (frame pointers only)",
            &["--stacks", "--stack-bytes", "0"],
        ),
        traced(
            "--stacks --stack-bytes 1024",
            &["--stacks", "--stack-bytes", "1024"],
        ),
        traced(
            "--stacks --stack-bytes 4096",
            &["--stacks", "--stack-bytes", "4096"],
        ),
        traced("--stacks (--stack-bytes 8192, the default)", &["--stacks"]),
        traced(
            "--stacks --stack-bytes 16384",
            &["--stacks", "--stack-bytes", "16384"],
        ),
    ];
    if alt {
        v.push(Cfg {
            label: "--alt-pmap: trace --stacks PID".into(),
            args: Some(vec!["--stacks".into()]),
            alt: true,
        });
    }
    v
}

fn run_one(bins: &Bins, alt: Option<&Path>, iters: u64, c: &Cfg, d: &mut Data) -> Result<()> {
    let args = vec!["--iters".to_string(), iters.to_string()];
    let l = Loop::start(bins, &args)?;
    let tracer = match &c.args {
        None => None,
        Some(targs) => {
            let bin = match (c.alt, alt) {
                (true, Some(a)) => a,
                _ => bins.pmap.as_path(),
            };
            let targs: Vec<&str> = targs.iter().map(String::as_str).collect();
            Some(Tracer::start(bin, &targs, &[l.pid()], Output::Text)?)
        }
    };
    let r = l.go()?;
    d.elapsed.push(r.elapsed);
    d.loop_cpu.push(r.usage.cpu());
    if let Some(t) = tracer {
        let tr = t.finish(Duration::from_secs(15))?;
        d.tracer_cpu.push(tr.usage.cpu());
        let seen: Option<u64> = ["mmap", "mprotect", "munmap"]
            .iter()
            .map(|n| tr.out.summary_calls(n))
            .sum();
        d.seen.push(seen.map(|v| v as f64).unwrap_or(f64::NAN));
        d.lost += tr.out.summary_lost().unwrap_or(0).max(tr.lost_on_stderr());
    }
    Ok(())
}

pub fn run(opts: &Opts) -> Result<String> {
    let bins = build(opts, true)?;
    let rounds = opts.rounds_or(7, 3);
    let iters: u64 = if opts.quick { 20_000 } else { 50_000 };
    let alt = opts.alt_pmap.as_deref();
    let cfgs = configs(alt.is_some());
    let mut data: Vec<Data> = cfgs.iter().map(|_| Data::default()).collect();
    eprintln!(
        "bench: stacks: {rounds} rounds of {} configurations",
        cfgs.len()
    );
    for r in 0..rounds {
        for k in 0..cfgs.len() {
            let i = (k + r) % cfgs.len();
            run_one(&bins, alt, iters, &cfgs[i], &mut data[i])?;
        }
    }

    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Stacks: `cargo xtask bench stacks{}`\n",
        if opts.quick { " --quick" } else { "" }
    );
    s.push_str(&machine_description());
    if let Some(a) = alt {
        let _ = writeln!(s, "- --alt-pmap: {}", a.display());
    }
    let _ = writeln!(
        s,
        "\nbench_loop: N × (mmap 16 KiB, touch 4 pages, mprotect 4 KiB, munmap), 3 traced \
         syscalls per iteration, N = {iters}; every configuration interleaved round-robin, \
         {rounds} rounds; the tracer is attached before the loop starts and writes text into \
         a pipe. Ratios are medians of per-round ratios against the untraced run of the same \
         round. Loop CPU is user+sys of the loop process (the kernel programs, stack copy \
         included, run in its syscalls); the tracer's CPU includes unwinding every copied \
         stack.\n"
    );
    let mut t = Table::new(&[
        "configuration",
        "loop median ms",
        "ratio vs untraced",
        "loop CPU ratio",
        "tracer CPU ms",
        "tracer CPU µs/syscall",
        "events seen per run",
        "lost",
    ]);
    let base = &data[0];
    for (c, d) in cfgs.iter().zip(&data) {
        let traced = c.args.is_some();
        t.row(vec![
            c.label.clone(),
            ms(d.elapsed.median()),
            if traced {
                fx(paired(&d.elapsed, &base.elapsed))
            } else {
                String::new()
            },
            if traced {
                fx(paired(&d.loop_cpu, &base.loop_cpu))
            } else {
                String::new()
            },
            if traced {
                ms(d.tracer_cpu.median())
            } else {
                String::new()
            },
            if traced {
                format!("{:.2}", d.tracer_cpu.median() * 1e6 / (3.0 * iters as f64))
            } else {
                String::new()
            },
            if traced {
                format!("{:.0}", d.seen.median())
            } else {
                String::new()
            },
            if traced {
                d.lost.to_string()
            } else {
                String::new()
            },
        ]);
    }
    s.push_str(&t.render());
    let default = cfgs
        .iter()
        .position(|c| c.label.starts_with("--stacks (--stack-bytes 8192"))
        .map(|i| paired(&data[i].elapsed, &base.elapsed))
        .unwrap_or(f64::NAN);
    let _ = writeln!(
        s,
        "\nGoal: `--stacks` (default copy) within {GOAL}x of untraced, wall: {} ({}).",
        fx(default),
        verdict(default, GOAL)
    );
    Ok(s)
}
