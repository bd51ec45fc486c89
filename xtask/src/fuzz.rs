//! `cargo xtask fuzz [TARGET|all] [SECONDS]`: runs the cargo-fuzz targets in
//! `fuzz/src/bin/` (nightly, libFuzzer). With no arguments: a short smoke of
//! every target, as `cargo xtask test` does.
//!
//! Seeds come from `fuzz/corpus/TARGET/` (in the repository, read only);
//! what the fuzzer finds goes to `fuzz/target/corpus/TARGET/` (kept between
//! runs, not committed) and crashes to `fuzz/artifacts/TARGET/`.

use std::{fs, path::PathBuf};

use anyhow::{Context, Result, bail};

use crate::{
    deps,
    util::{self, cargo, run},
};

/// Seconds each target runs in the smoke.
pub const SMOKE_SECONDS: u64 = 20;

const USAGE: &str = "usage: cargo xtask fuzz [TARGET|all] [SECONDS]
  no arguments: every target for 20 s (the smoke `cargo xtask test` runs)
  TARGET:       one target (or `all`) for SECONDS (default 20)";

pub fn main(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}\ntargets: {}", targets()?.join(", "));
        return Ok(());
    }
    if args.len() > 2 {
        bail!("too many arguments\n{USAGE}");
    }
    let seconds = match args.get(1) {
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .with_context(|| format!("SECONDS must be a positive whole number, not {s:?}"))?,
        None => SMOKE_SECONDS,
    };
    deps::ensure(deps::Needs {
        fuzz: true,
        lints: false,
        bench: false,
        tests: false,
    })?;
    let all = targets()?;
    let chosen: Vec<String> = match args.first().map(String::as_str) {
        None | Some("all") => all,
        Some(t) if all.iter().any(|a| a == t) => vec![t.to_string()],
        Some(t) => bail!("no fuzz target {t:?}; the targets are: {}", all.join(", ")),
    };
    for t in &chosen {
        fuzz_one(t, seconds, false)?;
    }
    eprintln!(
        "xtask: fuzzing clean: {} ({seconds} s each)",
        chosen.join(", ")
    );
    Ok(())
}

/// The smoke: every target for [`SMOKE_SECONDS`] (dependencies already checked).
pub fn smoke_all() -> Result<()> {
    for t in targets()? {
        fuzz_one(&t, SMOKE_SECONDS, true)?;
    }
    Ok(())
}

fn fuzz_dir() -> PathBuf {
    util::root().join("fuzz")
}

/// Target names: one file `fuzz/src/bin/NAME.rs` each.
pub fn targets() -> Result<Vec<String>> {
    let dir = fuzz_dir().join("src/bin");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("reading the fuzz targets in {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_string)
        })
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("no fuzz targets in {}", dir.display());
    }
    Ok(names)
}

/// Runs one target. `quiet`: libFuzzer's progress goes to a log file
/// (fuzz/target/logs/TARGET.log) and only its final statistics are shown,
/// or the log's end if it failed.
fn fuzz_one(target: &str, seconds: u64, quiet: bool) -> Result<()> {
    let fuzz = fuzz_dir();
    let work = fuzz.join("target/corpus").join(target);
    let seeds = fuzz.join("corpus").join(target);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    // Built first, on its own: a target that does not compile must not
    // be reported as a crash.
    run(cargo(["+nightly", "fuzz", "build", target]).env("PMAP_NO_EBPF", "1")).map_err(|e| {
        e.context(format!(
            "fuzz target {target} did not build (the compiler's errors are above)"
        ))
    })?;
    eprintln!("xtask: fuzzing {target} for {seconds} s (seeds: fuzz/corpus/{target}/)");
    let mut c = cargo(["+nightly", "fuzz", "run", target]);
    c.arg(&work);
    if seeds.is_dir() {
        c.arg(&seeds);
    }
    c.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // A hang is a bug too, but the smoke must end: 10 s for one input.
        .arg("-timeout=10")
        .arg("-print_final_stats=1")
        // The fuzzed code does not need the kernel programs; building them
        // under the fuzzer's sanitizer flags would not work.
        .env("PMAP_NO_EBPF", "1");
    let result = if quiet {
        let log = fuzz.join("target/logs").join(format!("{target}.log"));
        let result = util::run_logged(&mut c, &log);
        let text = fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if result.is_ok() {
            for l in lines
                .iter()
                .filter(|l| l.starts_with("Done ") || l.starts_with("stat::"))
            {
                eprintln!("  {l}");
            }
        } else {
            eprintln!("xtask: the end of {}:", log.display());
            for l in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("  {l}");
            }
        }
        result
    } else {
        run(&mut c)
    };
    result.map_err(|e| {
        e.context(format!(
            "fuzz target {target} failed: a crashing input is in fuzz/artifacts/{target}/; \
             reproduce with `cargo +nightly fuzz run {target} fuzz/artifacts/{target}/<file>`"
        ))
    })
}
