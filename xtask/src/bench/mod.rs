//! `cargo xtask bench snapshot|trace|capacity|follow|exporter|record|stacks`: benchmarks, compared side by side.
//!
//! Every benchmark builds what it runs (the release `pmap`, static as users
//! get it from [`crate::release::build_pmap`]; the workload bins of
//! `tests/`), interleaves the commands it compares round-robin so that the
//! noise of a shared machine falls on all of them alike, and prints a
//! Markdown report (also written to `--out FILE`).

mod capacity;
mod exporter;
mod follow;
mod proc;
mod record;
mod report;
mod snapshot;
mod stacks;
mod stats;
mod trace;
mod tracer;
mod workloads;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask bench snapshot|trace|capacity|follow|exporter|record|stacks [OPTIONS]

  snapshot   pmap vs cat /proc/PID/{maps,smaps} vs procps-ng pmap on 1k/10k/60k mappings
  trace      pmap trace: overhead, throughput, latency, own cost, cost to others
  capacity   pmap trace --json: the tracer's CPU per event flat out, 4,000 regions
  follow     pmap trace -f/--comm/--cgroup: cost to others, a forking server
  exporter   pmap exporter: own CPU at 1,000 processes, cost to a mapping loop vs bpftrace
  record     pmap trace --record: cost to the traced loop, size; replay --at speed
  stacks     pmap trace --stacks: cost to the loop by --stack-bytes (0, 1K, 4K, 8K, 16K)

options:
  --quick        fewer rounds and smaller loops (about a minute)
  --rounds N     rounds of the interleaved measurements
  --no-build     use the binaries already built (target/<host triple>/release/pmap,
                 the workload programs in target/release)
  --out FILE     also write the Markdown report to FILE
  --alt-pmap BIN snapshot, trace, capacity, stacks: also measure another pmap binary (e.g. the previous build)
                 side by side in the overhead (with and without --stacks) and
                 cost-to-others sections
";

/// Options common to every benchmark.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    pub quick: bool,
    pub rounds: Option<usize>,
    pub no_build: bool,
    pub out: Option<PathBuf>,
    pub alt_pmap: Option<PathBuf>,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--quick" => o.quick = true,
                "--no-build" => o.no_build = true,
                "--rounds" => {
                    let v = it.next().context("--rounds needs a number")?;
                    let n: usize = v.parse().with_context(|| format!("bad --rounds {v:?}"))?;
                    if n == 0 {
                        bail!("--rounds must be at least 1");
                    }
                    o.rounds = Some(n);
                }
                "--alt-pmap" => {
                    let p = PathBuf::from(it.next().context("--alt-pmap needs a binary")?);
                    if !p.is_file() {
                        bail!("--alt-pmap {}: no such file", p.display());
                    }
                    o.alt_pmap = Some(p);
                }
                "--out" => {
                    o.out = Some(PathBuf::from(it.next().context("--out needs a file name")?));
                }
                "-h" | "--help" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown option {other:?}\n{USAGE}"),
            }
        }
        Ok(o)
    }

    /// `rounds` if given, else `quick` or `full` by mode.
    pub fn rounds_or(&self, full: usize, quick: usize) -> usize {
        self.rounds.unwrap_or(if self.quick { quick } else { full })
    }
}

pub fn main(args: &[String]) -> Result<()> {
    let (name, rest) = match args.split_first() {
        Some((n, r)) => (n.as_str(), r),
        None => bail!("which benchmark?\n{USAGE}"),
    };
    let opts = Opts::parse(rest)?;
    let report = match name {
        "snapshot" => snapshot::run(&opts)?,
        "trace" => trace::run(&opts)?,
        "capacity" => capacity::run(&opts)?,
        "follow" => follow::run(&opts)?,
        "exporter" => exporter::run(&opts)?,
        "record" => record::run(&opts)?,
        "stacks" => stacks::run(&opts)?,
        "-h" | "--help" => {
            print!("{USAGE}");
            return Ok(());
        }
        other => bail!("no benchmark named {other:?}\n{USAGE}"),
    };
    print!("{report}");
    if let Some(out) = &opts.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("bench: report written to {}", out.display());
    }
    Ok(())
}

/// Where the binaries under test are.
pub struct Bins {
    pub pmap: PathBuf,
    pub many_maps: PathBuf,
    pub bench_loop: PathBuf,
    /// The snapshot design's read without parsing (`tests/src/bin/read_floor.rs`).
    pub read_floor: PathBuf,
    /// Why our `pmap` could not be built, if it could not.
    pub pmap_build_error: Option<String>,
}

fn workspace_root() -> PathBuf {
    // xtask/ is one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn release_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("release")
}

/// `cargo build --release ARGS`, for the workload programs of `tests/`
/// (our `pmap` is built by [`crate::release::build_pmap`]).
fn cargo_build(args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--release"])
        .args(args);
    eprintln!("bench: building: cargo build --release {}", args.join(" "));
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!(
            "`cargo build --release {}` failed ({s})",
            args.join(" ")
        )),
        Err(e) => Err(format!("could not run cargo: {e}")),
    }
}

/// Builds (unless `--no-build`) and locates the binaries. The workload bins
/// must build; our `pmap` may fail, and the benchmark then reports it as
/// missing rather than stopping. `with_ebpf`: our `pmap` embeds the eBPF
/// programs even if PMAP_NO_EBPF is set (the tracing benchmarks need the
/// real kernel programs, not the empty object PMAP_NO_EBPF=1 embeds).
pub fn build(opts: &Opts, with_ebpf: bool) -> Result<Bins> {
    let dir = release_dir();
    let mut pmap_build_error = None;
    if !opts.no_build {
        crate::deps::ensure(crate::deps::Needs {
            fuzz: false,
            lints: false,
            bench: true,
            tests: true,
        })?;
        cargo_build(&[
            "-p",
            "pmap-tests",
            "--bin",
            "many_maps",
            "--bin",
            "bench_loop",
            "--bin",
            "read_floor",
        ])
        .map_err(anyhow::Error::msg)
        .context("building the workload programs")?;
        if let Err(e) = crate::release::build_pmap(with_ebpf) {
            pmap_build_error = Some(format!("{e:#}"));
        }
    }
    let bins = Bins {
        pmap: crate::release::pmap_path()?,
        many_maps: dir.join("many_maps"),
        bench_loop: dir.join("bench_loop"),
        read_floor: dir.join("read_floor"),
        pmap_build_error,
    };
    for p in [&bins.many_maps, &bins.bench_loop, &bins.read_floor] {
        if !p.exists() {
            bail!(
                "{} does not exist: run without --no-build, or `cargo build --release -p pmap-tests`",
                p.display()
            );
        }
    }
    Ok(bins)
}

/// The machine, for the report header.
pub fn machine_description() -> String {
    let cmd_out = |c: &str, a: &[&str]| {
        Command::new(c)
            .args(a)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into());
    format!(
        "- date: {}\n- machine: {} CPUs ({}), kernel {}, load average at start {}\n",
        cmd_out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        cmd_out("nproc", &[]),
        cpu,
        cmd_out("uname", &["-r"]),
        load
    )
}
