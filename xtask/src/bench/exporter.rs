//! `cargo xtask bench exporter`: what `pmap exporter` costs.
//!
//! (a) Its own CPU while 1,000 processes run and it is scraped every 15 s
//!     (as Prometheus would), in steady state, with its scrape time and RSS.
//! (b) What an untraced mapping loop (bench_loop) pays while the exporter
//!     counts every process (`--all`), beside bpftrace counting the same
//!     tracepoints per process and syscall, and beside nothing; interleaved.

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{
    Bins, Opts,
    proc::Running,
    report::Table,
    stats::{Samples, ms},
    tracer::{cpu_secs, vm_kib},
    workloads::{BPFTRACE, Loop, on_path},
};

/// The syscalls the exporter counts (pmap_common::counters::SYSCALLS).
const SYSCALLS: &[&str] = &[
    "mmap",
    "munmap",
    "mprotect",
    "pkey_mprotect",
    "brk",
    "mremap",
    "madvise",
    "shmat",
    "shmdt",
    "mseal",
    "mlock",
    "mlock2",
    "munlock",
    "mlockall",
    "munlockall",
    "mbind",
    "remap_file_pages",
];

pub fn run(opts: &Opts) -> Result<String> {
    let bins = super::build(opts, true)?;
    if let Some(e) = &bins.pmap_build_error {
        bail!("building pmap failed: {e}");
    }
    if !opts.no_build {
        super::cargo_build(&["-p", "pmap-tests", "--bin", "exporter_target"])
            .map_err(anyhow::Error::msg)?;
    }
    let target = super::release_dir().join("exporter_target");
    if !target.exists() {
        bail!(
            "{} does not exist: run without --no-build",
            target.display()
        );
    }
    let mut s = String::new();
    let _ = writeln!(s, "## pmap exporter\n\n{}", super::machine_description());
    steady_cpu(&mut s, &bins, &target, opts)?;
    loop_cost(&mut s, &bins, opts)?;
    let _ = writeln!(
        s,
        "Reproduce: `cargo xtask bench exporter{}`\n",
        if opts.quick { " --quick" } else { "" }
    );
    Ok(s)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `pmap exporter --listen 127.0.0.1:PORT ARGS`, once it serves.
fn start_exporter(pmap: &Path, args: &[&str]) -> Result<(Running, u16)> {
    let port = free_port()?;
    let mut cmd = Command::new(pmap);
    cmd.args(["exporter", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut run = Running::spawn(&mut cmd, "pmap exporter")?;
    let mut err = BufReader::new(run.child.stderr.take().context("exporter stderr")?);
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line)? == 0 {
            bail!("pmap exporter exited before serving");
        }
        if line.contains("serving http://") {
            break;
        }
    }
    // Keep draining its stderr so it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    Ok((run, port))
}

/// GET /metrics; returns the answer's size and the most mappings of one
/// process in it (what the per-kind bytes' smaps reads cost follows).
fn scrape(port: u16) -> Result<(usize, u64)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    write!(s, "GET /metrics HTTP/1.0\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    if !body.starts_with(b"HTTP/1.1 200") {
        bail!("GET /metrics did not answer 200");
    }
    let text = String::from_utf8_lossy(&body);
    let largest = text
        .lines()
        .filter(|l| l.starts_with("pmap_mappings{") && !l.contains("pid=\"other\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    Ok((body.len(), largest))
}

/// 1,000 idle processes (exporter_target hold).
fn spawn_targets(bin: &Path, n: usize) -> Result<Vec<Child>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = Command::new(bin)
            .arg("hold")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting exporter_target")?;
        let mut r = BufReader::new(c.stdout.take().context("stdout")?);
        let mut line = String::new();
        r.read_line(&mut line)?;
        line.clear();
        r.read_line(&mut line)?;
        out.push(c);
    }
    Ok(out)
}

fn steady_cpu(s: &mut String, bins: &Bins, target: &Path, opts: &Opts) -> Result<()> {
    let scrapes = opts.rounds_or(8, 3);
    let period = Duration::from_secs(15);
    eprintln!("bench: exporter: 1,000 processes, {scrapes} scrapes 15 s apart");
    let mut targets = spawn_targets(target, 1000)?;
    let mut rows = Vec::new();
    for (name, args) in [
        ("eBPF (default, --top 20)", vec!["--all"]),
        ("poll (--backend poll)", vec!["--all", "--backend", "poll"]),
    ] {
        let (mut run, port) = start_exporter(&bins.pmap, &args)?;
        // Warm-up: the first scrape sees every process for the first time.
        scrape(port)?;
        let cpu0 = cpu_secs(run.pid()).context("exporter CPU")?;
        let t0 = Instant::now();
        let mut lat = Samples::default();
        let mut size = 0;
        let mut largest = 0;
        for i in 0..scrapes {
            let next = t0 + period * (i as u32 + 1);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            let t = Instant::now();
            let (bytes, most) = scrape(port)?;
            size = bytes;
            largest = largest.max(most);
            lat.push(t.elapsed().as_secs_f64());
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_secs(run.pid()).context("exporter CPU")? - cpu0;
        let rss = vm_kib(run.pid(), "VmRSS:").unwrap_or(f64::NAN);
        run.signal(libc::SIGTERM);
        run.wait_timeout(Duration::from_secs(30))?;
        rows.push((name, cpu, wall, lat, rss, size, largest));
    }
    for c in &mut targets {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = writeln!(
        s,
        "### (a) The exporter's own CPU, 1,000 processes, scraped every 15 s\n\n\
         1,000 idle `exporter_target hold` processes plus whatever else runs on the machine; \
         `pmap exporter --all` scraped by a plain HTTP GET every 15 s, {scrapes} scrapes after a \
         warm-up scrape. CPU is the exporter's user+sys time over the window. The top 20 \
         get their `smaps` read for the per-kind bytes, so a scrape costs more when large \
         processes run: the last column is the most mappings of one process seen.\n"
    );
    let mut t = Table::new(&[
        "backend",
        "CPU % of one core",
        "CPU per scrape ms",
        "scrape median ms",
        "scrape max ms",
        "RSS MiB",
        "/metrics bytes",
        "largest process, mappings",
    ]);
    for (name, cpu, wall, lat, rss, size, largest) in rows {
        t.row(vec![
            name.into(),
            format!("{:.3}", 100.0 * cpu / wall),
            ms(cpu / scrapes as f64),
            ms(lat.median()),
            ms(lat.max()),
            format!("{:.1}", rss / 1024.0),
            size.to_string(),
            largest.to_string(),
        ]);
    }
    s.push_str(&t.render());
    s.push('\n');
    Ok(())
}

/// bpftrace keeping what the exporter keeps: a count per process and
/// syscall at the same exit tracepoints (and the mprotect entries).
fn start_bpftrace() -> Result<Running> {
    let exits = SYSCALLS
        .iter()
        .map(|s| format!("tracepoint:syscalls:sys_exit_{s}"))
        .collect::<Vec<_>>()
        .join(",");
    let script = format!(
        "BEGIN {{ printf(\"attached\\n\"); }} \
         {exits} {{ @[pid, probe] = count(); }} \
         tracepoint:syscalls:sys_enter_mprotect,tracepoint:syscalls:sys_enter_pkey_mprotect \
         {{ @e[tid] = args->prot; }}"
    );
    let mut cmd = Command::new(BPFTRACE);
    cmd.args(["-e", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut run = Running::spawn(&mut cmd, "bpftrace")?;
    let mut out = BufReader::new(run.child.stdout.take().context("bpftrace stdout")?);
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line)? == 0 {
            bail!("bpftrace exited before attaching (tracepoints missing? mseal needs 6.10)");
        }
        if line.trim() == "attached" {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Ok(run)
}

fn loop_cost(s: &mut String, bins: &Bins, opts: &Opts) -> Result<()> {
    let rounds = opts.rounds_or(7, 2);
    let iters = if opts.quick { 50_000 } else { 100_000 };
    let args = vec!["--iters".to_string(), iters.to_string()];
    #[derive(Clone, Copy, PartialEq)]
    enum W {
        Nothing,
        Exporter,
        Bpftrace,
    }
    let mut cfgs = vec![W::Nothing, W::Exporter];
    if on_path(BPFTRACE) {
        cfgs.push(W::Bpftrace);
    }
    let mut wall: Vec<Samples> = cfgs.iter().map(|_| Samples::default()).collect();
    let mut cpu: Vec<Samples> = cfgs.iter().map(|_| Samples::default()).collect();
    eprintln!("bench: exporter: cost to an untraced loop, {rounds} rounds");
    for r in 0..rounds {
        for k in 0..cfgs.len() {
            let i = (k + r) % cfgs.len();
            let mut tool = match cfgs[i] {
                W::Nothing => None,
                W::Exporter => Some(start_exporter(&bins.pmap, &["--all"])?.0),
                W::Bpftrace => Some(start_bpftrace()?),
            };
            let res = Loop::start(bins, &args)?.go()?;
            if let Some(t) = &mut tool {
                t.signal(libc::SIGTERM);
                t.wait_timeout(Duration::from_secs(30))?;
            }
            wall[i].push(res.elapsed);
            cpu[i].push(res.usage.cpu());
        }
    }
    let _ = writeln!(
        s,
        "### (b) What an untraced mapping loop pays\n\n\
         bench_loop (N = {iters}: mmap 16 KiB, touch, mprotect 4 KiB, munmap) while nothing \
         runs, while `pmap exporter --all` counts every process, and while bpftrace counts per \
         process and syscall at the same {} sys_exit tracepoints plus the mprotect entries. \
         {rounds} rounds, interleaved; ratios are medians of per-round ratios. The loop's CPU \
         time (user+sys) is what the kernel programs add to each call; its wall time also \
         carries waits for a CPU on this shared machine.\n",
        SYSCALLS.len()
    );
    let mut t = Table::new(&[
        "while",
        "loop median ms",
        "loop min ms",
        "ratio vs nothing",
        "loop CPU ms",
        "CPU ratio vs nothing",
    ]);
    // Median of the per-round ratios: both sides of one saw the same load.
    let paired = |x: &Samples, y: &Samples| {
        let mut r = Samples::default();
        for (a, b) in x.values().iter().zip(y.values()) {
            r.push(a / b);
        }
        r.median()
    };
    for (i, c) in cfgs.iter().enumerate() {
        let ratio = paired(&wall[i], &wall[0]);
        let cpu_ratio = paired(&cpu[i], &cpu[0]);
        t.row(vec![
            match c {
                W::Nothing => "nothing",
                W::Exporter => "pmap exporter --all",
                W::Bpftrace => "bpftrace, same tracepoints",
            }
            .into(),
            ms(wall[i].median()),
            ms(wall[i].min()),
            if i == 0 {
                String::new()
            } else {
                format!("{ratio:.2}x")
            },
            ms(cpu[i].median()),
            if i == 0 {
                String::new()
            } else {
                format!("{cpu_ratio:.2}x")
            },
        ]);
    }
    if !on_path(BPFTRACE) {
        t.row(vec![
            "bpftrace".into(),
            "not measured: not installed (Debian: apt-get install bpftrace)".into(),
        ]);
    }
    s.push_str(&t.render());
    s.push('\n');
    Ok(())
}
