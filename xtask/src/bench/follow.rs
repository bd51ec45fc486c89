//! `cargo xtask bench follow`: what following process trees costs.
//!
//! (a) What an untraced mapping loop pays while `pmap trace` runs on
//!     another process: plainly, with `-f`, with `--comm` and `--cgroup`
//!     matching nothing (their check runs at every mapping call of every
//!     process not traced), and while bpftrace counts the same tracepoints.
//!     Interleaved rounds, ratios paired by round.
//! (b) A forking server: 50 forks a second, each child mapping, touching
//!     and re-protecting memory and living 4 s (about 200 alive at once),
//!     traced with `-f`: events lost, the tracer's peak RSS and CPU, and
//!     how many of the children it followed.

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use super::{
    Bins, Opts, build, cargo_build, machine_description,
    proc::Running,
    release_dir,
    report::Table,
    stats::{Samples, mib, ms},
    trace::{fx, paired},
    tracer::{Output, Tracer},
    workloads::{Bpftrace, Layout, Loop, ManyMaps, on_path},
};

/// A cgroup v2 group of our own, removed when dropped.
struct EmptyGroup(PathBuf);

impl EmptyGroup {
    fn create() -> Result<EmptyGroup> {
        let info = std::fs::read_to_string("/proc/self/mountinfo")?;
        let root = info
            .lines()
            .find_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                (right.split(' ').next()? == "cgroup2")
                    .then(|| left.split(' ').nth(4).map(PathBuf::from))?
            })
            .context("no cgroup v2 hierarchy is mounted")?;
        let dir = root.join(format!("pmap-bench-{}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(EmptyGroup(dir))
    }
}

impl Drop for EmptyGroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

pub fn run(opts: &Opts) -> Result<String> {
    let bins = build(opts, true)?;
    if let Some(e) = &bins.pmap_build_error {
        bail!("pmap could not be built: {e}");
    }
    if !opts.no_build {
        cargo_build(&["-p", "pmap-tests", "--bin", "fork_storm"])
            .map_err(anyhow::Error::msg)
            .context("building fork_storm")?;
    }
    let mut s = String::new();
    let _ = writeln!(s, "## pmap trace -f: following process trees\n");
    s.push_str(&machine_description());
    let _ = writeln!(
        s,
        "- reproduce: `cargo xtask bench follow{}`\n",
        if opts.quick { " --quick" } else { "" }
    );
    cost_to_others(&mut s, &bins, opts)?;
    fork_storm(&mut s, &bins, opts)?;
    Ok(s)
}

fn cost_to_others(s: &mut String, bins: &Bins, opts: &Opts) -> Result<()> {
    let rounds = opts.rounds_or(9, 3);
    let iters = if opts.quick { 100_000 } else { 300_000 };
    let group = EmptyGroup::create()?;
    let group_path = group.0.display().to_string();
    let nobody = format!("nomatch{}", std::process::id() % 100_000);
    let mut cfgs: Vec<(&str, Vec<String>)> = vec![
        ("nothing traces", vec![]),
        ("pmap trace OTHER", vec![]),
        ("pmap trace -f OTHER", vec!["-f".into()]),
        ("pmap trace --comm NOBODY", vec!["--comm".into(), nobody]),
        (
            "pmap trace --cgroup EMPTY",
            vec!["--cgroup".into(), group_path],
        ),
    ];
    let bpftrace = on_path("bpftrace");
    if bpftrace {
        cfgs.push(("bpftrace on OTHER", vec![]));
    }
    let other = ManyMaps::start(bins, 1_000, Layout::Anonymous)?;
    let args = vec!["--iters".to_string(), iters.to_string()];
    let mut wall: Vec<Samples> = cfgs.iter().map(|_| Samples::default()).collect();
    let mut cpu: Vec<Samples> = cfgs.iter().map(|_| Samples::default()).collect();
    eprintln!("bench: follow: cost to untraced processes, {rounds} rounds");
    for r in 0..rounds {
        for k in 0..cfgs.len() {
            let i = (k + r) % cfgs.len();
            let (name, extra) = &cfgs[i];
            let res = match *name {
                "nothing traces" => Loop::start(bins, &args)?.go()?,
                "bpftrace on OTHER" => {
                    let b = Bpftrace::start(other.pid())?;
                    let res = Loop::start(bins, &args)?.go()?;
                    b.finish()?;
                    res
                }
                _ => {
                    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                    // The group options trace whoever matches; the others
                    // the idle process.
                    let pids = if name.contains("--") {
                        vec![]
                    } else {
                        vec![other.pid()]
                    };
                    let t = Tracer::start(&bins.pmap, &extra, &pids, Output::Text)?;
                    let res = Loop::start(bins, &args)?.go()?;
                    t.finish(Duration::ZERO)?;
                    res
                }
            };
            wall[i].push(res.elapsed);
            cpu[i].push(res.usage.cpu());
        }
    }
    drop(other);
    let _ = writeln!(
        s,
        "### (a) What processes that are not traced pay\n\n\
         bench_loop (N = {iters}: mmap, mprotect, munmap) untraced, while each of these runs. \
         {rounds} rounds, interleaved; ratios are medians of per-round ratios.\n"
    );
    let mut t = Table::new(&[
        "while",
        "loop median ms",
        "ratio vs nothing",
        "loop CPU ms",
        "CPU ratio vs nothing",
    ]);
    for (i, (name, _)) in cfgs.iter().enumerate() {
        let first = i == 0;
        t.row(vec![
            (*name).into(),
            ms(wall[i].median()),
            if first {
                String::new()
            } else {
                fx(paired(&wall[i], &wall[0]))
            },
            ms(cpu[i].median()),
            if first {
                String::new()
            } else {
                fx(paired(&cpu[i], &cpu[0]))
            },
        ]);
    }
    if !bpftrace {
        t.row(vec!["bpftrace on OTHER".into(), "not installed".into()]);
    }
    s.push_str(&t.render());
    s.push('\n');
    Ok(())
}

fn fork_storm(s: &mut String, bins: &Bins, opts: &Opts) -> Result<()> {
    let runs = opts.rounds_or(3, 1);
    let duration = if opts.quick { 8.0 } else { 20.0 };
    let storm = release_dir().join("fork_storm");
    let out = std::env::temp_dir().join(format!("pmap-bench-follow-{}.jsonl", std::process::id()));
    let mut t = Table::new(&[
        "run",
        "forked",
        "followed",
        "events lost",
        "tracer peak RSS MiB",
        "tracer CPU s",
        "tracer CPU / child",
    ]);
    for run in 1..=runs {
        eprintln!("bench: follow: fork storm, run {run} of {runs}");
        let (forked, res) = storm_once(&storm, bins, &out, duration)?;
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let followed = text
            .lines()
            .filter(|l| l.contains("\"type\":\"fork\""))
            .count();
        let lost = res.lost_on_stderr() + res.out.lost_in_records;
        let cpu = res.usage.cpu();
        t.row(vec![
            run.to_string(),
            forked.to_string(),
            followed.to_string(),
            lost.to_string(),
            mib(res.hwm_kib),
            format!("{cpu:.2}"),
            format!("{:.2} ms", 1e3 * cpu / forked.max(1) as f64),
        ]);
    }
    let _ = std::fs::remove_file(&out);
    let _ = writeln!(
        s,
        "### (b) A forking server\n\n\
         fork_storm --rate 50 --life 4 --duration {duration}: 50 forks a second, each child \
         maps 256 KiB, writes it, makes a page read-only, lives 4 s (about 200 alive at once), \
         traced by `pmap trace -f --json -o FILE` attached before the first fork. Goal: no \
         event lost, tracer peak RSS under 64 MiB.\n"
    );
    s.push_str(&t.render());
    s.push('\n');
    Ok(())
}

/// One storm under the tracer: how many children were forked, and what the
/// tracer did.
fn storm_once(
    storm: &Path,
    bins: &Bins,
    out: &Path,
    duration: f64,
) -> Result<(u64, super::tracer::TracerResult)> {
    let mut cmd = Command::new(storm);
    cmd.args(["--rate", "50", "--life", "4", "--duration"])
        .arg(duration.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut run = Running::spawn(&mut cmd, "fork_storm")?;
    let mut stdin = run.child.stdin.take().context("fork_storm stdin")?;
    let mut stdout = BufReader::new(run.child.stdout.take().context("fork_storm stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let pid: u32 = line
        .strip_prefix("ready ")
        .and_then(|p| p.trim().parse().ok())
        .with_context(|| format!("fork_storm said {line:?}"))?;
    let outs = out.display().to_string();
    let tracer = Tracer::start(
        &bins.pmap,
        &["-f", "--json", "-o", &outs],
        &[pid],
        Output::Text,
    )?;
    stdin.write_all(b"go\n")?;
    line.clear();
    stdout.read_line(&mut line)?;
    let forked: u64 = line
        .strip_prefix("forked ")
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("fork_storm said {line:?}"))?;
    run.wait()?;
    let res = tracer.finish(Duration::from_secs(30))?;
    Ok((forked, res))
}
