//! `cargo xtask bench record`: `pmap trace --record` and `pmap replay`.
//!
//! - Cost to the traced process: the bench_loop (mmap, mprotect, munmap)
//!   launched under `pmap trace -o /dev/null` (text output), the same
//!   with `--record FILE`, and with `--json`, interleaved round-robin; the
//!   loop's own wall time, ratios side by side.
//! - Size: bytes per traced call of the recordings of those runs, without
//!   and with `--stacks`.
//! - `replay --at` on a recording of at least 1,000,000 records: the time
//!   to print the table at its start, middle and end (goal: under 200 ms),
//!   next to a full `replay` of the same file.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, Result, bail};

use super::{
    Bins, Opts, build,
    report::Table,
    stats::{Samples, ms, ratio, verdict},
};

/// The `--at` goal, seconds.
const AT_GOAL: f64 = 0.2;
/// The size goal, bytes per event without stacks.
const SIZE_GOAL: f64 = 32.0;

fn scratch() -> Result<PathBuf> {
    let d = super::release_dir().join("bench-record");
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

/// Runs `pmap trace ARGS -- bench_loop --iters N`; returns the loop's
/// wall time in seconds (from its own `elapsed_ns`).
fn traced_loop(bins: &Bins, args: &[&str], iters: u64, ring: &str) -> Result<f64> {
    let iters_s = iters.to_string();
    let out = Command::new(&bins.pmap)
        .arg("trace")
        .args(["--no-initial-table", "--ring-size", ring])
        .args(args)
        .arg("--")
        .arg(&bins.bench_loop)
        .args(["--iters", &iters_s])
        .stdin(Stdio::null())
        .output()
        .context("running pmap trace")?;
    // With -o the command keeps the tracer's stdout: its line is there.
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("bench_loop iters"))
        .with_context(|| {
            format!(
                "no bench_loop line from `pmap trace {}` (status {}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let ns: f64 = line
        .split_whitespace()
        .skip_while(|w| *w != "elapsed_ns")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no elapsed_ns in {line:?}"))?;
    Ok(ns / 1e9)
}

/// `pmap replay --info`'s deltas count.
fn deltas_in(bins: &Bins, rec: &Path) -> Result<u64> {
    let out = Command::new(&bins.pmap)
        .args(["replay", "--info"])
        .arg(rec)
        .output()
        .context("running pmap replay --info")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("records: "))
        .and_then(|l| l.split('(').nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no `records: N (M deltas` line in --info: {text}"))
}

fn file_len(p: &Path) -> f64 {
    std::fs::metadata(p).map_or(f64::NAN, |m| m.len() as f64)
}

/// Seconds `pmap ARGS` takes, output discarded; fails if pmap does.
fn timed(bins: &Bins, args: &[&str]) -> Result<f64> {
    let t = Instant::now();
    let st = Command::new(&bins.pmap)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .context("running pmap")?;
    let secs = t.elapsed().as_secs_f64();
    if !st.success() {
        bail!("`pmap {}` failed ({st})", args.join(" "));
    }
    Ok(secs)
}

pub fn run(opts: &Opts) -> Result<String> {
    let bins = build(opts, true)?;
    if let Some(e) = &bins.pmap_build_error {
        bail!("pmap could not be built: {e}");
    }
    let dir = scratch()?;
    let rounds = opts.rounds_or(7, 3);
    let iters: u64 = if opts.quick { 30_000 } else { 100_000 };
    // Big enough that the loop loses nothing: every call is recorded.
    let ring = "67108864";
    let rec = dir.join("loop.pmaprec");
    let rec_stacks = dir.join("loop-stacks.pmaprec");
    let (rec_s, stacks_s) = (rec.to_string_lossy(), rec_stacks.to_string_lossy());
    let configs: [(&str, Vec<&str>); 3] = [
        ("text -o /dev/null", vec!["-o", "/dev/null"]),
        (
            "text -o /dev/null --record FILE",
            vec!["-o", "/dev/null", "--record", &rec_s],
        ),
        ("--json -o /dev/null", vec!["--json", "-o", "/dev/null"]),
    ];
    let mut samples: Vec<Samples> = configs.iter().map(|_| Samples::default()).collect();
    for round in 0..rounds {
        for k in 0..configs.len() {
            let i = (k + round) % configs.len();
            eprintln!("bench: record: round {} {}", round + 1, configs[i].0);
            samples[i].push(traced_loop(&bins, &configs[i].1, iters, ring)?);
        }
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Record: `cargo xtask bench record{}`\n",
        if opts.quick { " --quick" } else { "" }
    );
    let _ = writeln!(
        s,
        "bench_loop --iters {iters} ({} traced calls) launched under `pmap trace \
         --no-initial-table --ring-size {ring}`; the loop's wall time, median of {rounds} \
         interleaved rounds.\n",
        iters * 3
    );
    let mut t = Table::new(&["tracer output", "loop wall (ms)", "vs text"]);
    let base = samples[0].median();
    for (i, (name, _)) in configs.iter().enumerate() {
        t.row(vec![
            format!("`{name}`"),
            ms(samples[i].median()),
            ratio(samples[i].median(), base),
        ]);
    }
    s.push_str(&t.render());

    traced_loop(
        &bins,
        &["-o", "/dev/null", "--stacks", "--record", &stacks_s],
        iters,
        ring,
    )?;
    let calls = (iters * 3) as f64;
    let (plain, stacks) = (file_len(&rec), file_len(&rec_stacks));
    let (d_plain, d_stacks) = (deltas_in(&bins, &rec)?, deltas_in(&bins, &rec_stacks)?);
    let _ = writeln!(
        s,
        "\nSize (the last recording of each kind): without stacks {:.0} bytes, {:.1} bytes \
         per traced call ({d_plain} deltas: {:.1} bytes per delta); goal at most {SIZE_GOAL}: \
         {}. With `--stacks`: {:.0} bytes, {:.1} bytes per call ({d_stacks} deltas).\n",
        plain,
        plain / calls,
        plain / d_plain.max(1) as f64,
        verdict(plain / calls, SIZE_GOAL),
        stacks,
        stacks / calls,
    );

    // A recording of at least 1,000,000 records.
    let big = dir.join("big.pmaprec");
    let big_s = big.to_string_lossy();
    let big_iters = if opts.quick { "350000" } else { "400000" };
    eprintln!("bench: record: a recording of {big_iters} loop iterations");
    let out = Command::new(&bins.pmap)
        .args(["trace", "--no-initial-table", "--ring-size", ring])
        .args(["-o", "/dev/null", "--record", &big_s, "--"])
        .arg(&bins.bench_loop)
        .args(["--iters", big_iters])
        .stdin(Stdio::null())
        .output()
        .context("recording the big trace")?;
    if !out.status.success() {
        bail!(
            "recording the big trace failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let n = deltas_in(&bins, &big)?;
    // Its time span, from the loop's own line: the middle and the end.
    let info = Command::new(&bins.pmap)
        .args(["replay", "--info", &big_s])
        .output()?;
    let info = String::from_utf8_lossy(&info.stdout);
    let secs_of = |key: &str| -> Result<f64> {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|l| l.strip_suffix('s'))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no `{key}` in --info: {info}"))
    };
    let (first, last) = (secs_of("first map: +")?, secs_of("last record: +")?);
    let points = [
        ("near the start", format!("+{:.6}", first + 0.001)),
        ("middle", format!("+{:.6}", (first + last) / 2.0)),
        ("end", format!("+{:.6}", last - 0.001)),
    ];
    let mut at: Vec<Samples> = points.iter().map(|_| Samples::default()).collect();
    let mut full = Samples::default();
    for _ in 0..rounds {
        for (i, (_, when)) in points.iter().enumerate() {
            at[i].push(timed(&bins, &["replay", "--at", when, &big_s])?);
        }
        full.push(timed(&bins, &["replay", &big_s])?);
    }
    let _ = writeln!(
        s,
        "`pmap replay --at WHEN` on a recording of {n} deltas ({:.1} MB, bench_loop \
         --iters {big_iters}), median of {rounds} rounds, next to a full replay of the same \
         file:\n",
        file_len(&big) / 1e6
    );
    let mut t = Table::new(&["command", "wall (ms)", "vs full replay", "goal 200 ms"]);
    for (i, (name, when)) in points.iter().enumerate() {
        t.row(vec![
            format!("`replay --at {when}` ({name})"),
            ms(at[i].median()),
            ratio(at[i].median(), full.median()),
            verdict(at[i].median(), AT_GOAL).into(),
        ]);
    }
    t.row(vec![
        "`replay` (every record)".into(),
        ms(full.median()),
        "1.00x".into(),
        String::new(),
    ]);
    s.push_str(&t.render());
    if n < 1_000_000 {
        let _ = writeln!(
            s,
            "\nThe recording has fewer than 1,000,000 deltas ({n}): the tracer merged or lost \
             calls; the --at figures are for this size."
        );
    }
    Ok(s)
}
