//! `pmap exporter` end to end: a real Prometheus server (Debian package
//! `prometheus`, installed by `cargo xtask deps`) scrapes the exporter on
//! 127.0.0.1 every 500 ms, and the tests ask it through its HTTP API what
//! it stored; the targets are real processes.
//!
//! Root and a real kernel are needed (eBPF), and `bpftool` for the check
//! that nothing is left in the kernel after SIGTERM.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use pmap_tests::trace_harness::{bpf_objects_of, bpftool_ids, serial};
use pmap_tests::{pmap_bin, tool, workload_bin};

const NOBODY: [&str; 3] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];

/// A loopback port free now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding an ephemeral port on 127.0.0.1")
        .port()
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "pmap-exporter-{what}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&p).expect("creating a temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One HTTP/1.0 GET on loopback; (status code, body).
fn http_get(port: u16, target: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A child whose stderr is collected in the background.
struct Logged {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Logged {
    fn spawn(mut cmd: Command) -> Logged {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("piped");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        Logged { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn wait_stderr(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stderr().contains(needle) {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("exited ({st}) before saying {needle:?}:\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {within:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn terminate(&mut self, within: Duration) -> ExitStatus {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "still running {within:?} after SIGTERM:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pmap exporter` on a free loopback port.
struct Exporter {
    proc: Logged,
    port: u16,
}

impl Exporter {
    fn start(args: &[&str]) -> Exporter {
        Exporter::start_as(None, args)
    }

    /// Started through `setpriv` with `user` options when given.
    fn start_as(user: Option<&[&str]>, args: &[&str]) -> Exporter {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = match user {
            Some(opts) => {
                let mut c = Command::new(tool("setpriv", "util-linux"));
                c.args(opts).arg(pmap_bin());
                c
            }
            None => Command::new(pmap_bin()),
        };
        cmd.args(["exporter", "--listen", &listen, "--interval", "0"])
            .args(args);
        let mut proc = Logged::spawn(cmd);
        proc.wait_stderr("serving http://", Duration::from_secs(60));
        Exporter { proc, port }
    }

    fn metrics(&self) -> String {
        let (code, body) = http_get(self.port, "/metrics").expect("GET /metrics answers");
        assert_eq!(code, 200, "GET /metrics: {body}");
        body
    }

    /// SIGTERM: exits 0, and every eBPF program, link and map it held
    /// (`ebpf`: it must hold some) is gone from the kernel. Its own
    /// objects, not a before/after diff of the kernel's lists, so that
    /// other eBPF users on the machine cannot make this fail or pass.
    fn stop_cleanly(mut self, ebpf: bool) {
        let held = bpf_objects_of(self.proc.child.id());
        assert_eq!(
            !held.progs.is_empty() && !held.links.is_empty(),
            ebpf,
            "eBPF programs and links the exporter holds: {held:?}\n{}",
            self.proc.stderr()
        );
        let st = self.proc.terminate(Duration::from_secs(30));
        assert!(
            st.success(),
            "exporter exited with {st}:\n{}",
            self.proc.stderr()
        );
        // The kernel frees them asynchronously after the last descriptor.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<(&str, u64)> = [
                ("prog", &held.progs),
                ("link", &held.links),
                ("map", &held.maps),
            ]
            .into_iter()
            .flat_map(|(kind, ids)| {
                let now = bpftool_ids(kind);
                ids.iter()
                    .filter(move |i| now.contains(i))
                    .map(move |i| (kind, *i))
            })
            .collect();
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "eBPF objects left after the exporter's SIGTERM: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A Prometheus server on 127.0.0.1 scraping `target_port` every 500 ms.
struct Prometheus {
    proc: Logged,
    port: u16,
    _dir: TempDir,
}

impl Prometheus {
    fn start(target_port: u16) -> Prometheus {
        let bin = tool("prometheus", "prometheus");
        let dir = TempDir::new("prometheus");
        let port = free_port();
        let config = dir.0.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 500ms\n  scrape_timeout: 500ms\n\
                 scrape_configs:\n  - job_name: pmap\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .expect("writing prometheus.yml");
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let mut proc = Logged::spawn(cmd);
        proc.wait_stderr(
            "Server is ready to receive web requests",
            Duration::from_secs(60),
        );
        Prometheus {
            proc,
            port,
            _dir: dir,
        }
    }

    /// An instant query: each result's labels and value.
    fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let target = format!("/api/v1/query?query={}", percent_encode(promql));
        let (code, body) = http_get(self.port, &target).unwrap_or_else(|| {
            panic!(
                "Prometheus did not answer {promql}:\n{}",
                self.proc.stderr()
            )
        });
        assert_eq!(code, 200, "query {promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("Prometheus answers JSON");
        v["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("no result array: {body}"))
            .iter()
            .map(|r| {
                let value = r["value"][1]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("no value in {r}"));
                (r["metric"].clone(), value)
            })
            .collect()
    }

    /// Waits until `promql` gives one value that satisfies `ok`; returns it.
    fn wait_value(&self, promql: &str, within: Duration, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + within;
        loop {
            let r = self.query(promql);
            if let [(_, v)] = r.as_slice()
                && ok(*v)
            {
                return *v;
            }
            assert!(
                Instant::now() < deadline,
                "{promql} did not reach the expected value within {within:?}; last: {r:?}\n\
                 prometheus stderr:\n{}",
                self.proc.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `promql` returns no series.
    fn wait_empty(&self, promql: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let r = self.query(promql);
            if r.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{promql} still returns {} series after {within:?}: {:?}",
                r.len(),
                r.first()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A workload process (tests/src/bin/exporter_target.rs) that has printed
/// `ready`; killed on drop.
struct Target {
    child: Child,
    pid: u32,
}

impl Target {
    fn start(args: &[&str]) -> Target {
        Target::start_as(None, args)
    }

    fn start_as(user: Option<&[&str]>, args: &[&str]) -> Target {
        let bin = workload_bin("exporter_target");
        let mut cmd = match user {
            Some(opts) => {
                let mut c = Command::new(tool("setpriv", "util-linux"));
                c.args(opts).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let mut child = cmd
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        out.read_line(&mut line).expect("pid line");
        let pid = line.trim().parse().expect("exporter_target prints its pid");
        line.clear();
        out.read_line(&mut line).expect("ready line");
        assert_eq!(line.trim(), "ready", "exporter_target {args:?}");
        Target { child, pid }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.pid as i32, sig) };
    }

    /// Waits until /proc says the process is stopped (state T).
    fn stop(&self) {
        self.signal(libc::SIGSTOP);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !proc_state(self.pid).starts_with('T') {
            assert!(Instant::now() < deadline, "{} did not stop", self.pid);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_state(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .map(|(_, r)| r.chars().take(1).collect())
        .unwrap_or_default()
}

fn maps_lines(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/maps: {e}"))
        .lines()
        .count()
}

/// Sum of region sizes in /proc/PID/maps.
fn mapped_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .expect("maps")
        .lines()
        .filter_map(|l| {
            let (range, _) = l.split_once(' ')?;
            let (a, b) = range.split_once('-')?;
            Some(u64::from_str_radix(b, 16).ok()? - u64::from_str_radix(a, 16).ok()?)
        })
        .sum()
}

fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS in status")
}

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn prometheus_stores_the_mappings_of_a_stopped_process_exactly() {
    let _serial = serial();
    let target = Target::start(&["maps", "3000"]);
    target.stop();
    let lines = maps_lines(target.pid);
    let exporter = Exporter::start(&["--all", "--top", "5"]);
    assert!(
        exporter.proc.stderr().contains("counting with eBPF"),
        "as root the exporter counts with eBPF:\n{}",
        exporter.proc.stderr()
    );
    let prom = Prometheus::start(exporter.port);
    let pid = target.pid;
    let got = prom.wait_value(&format!("pmap_mappings{{pid=\"{pid}\"}}"), WAIT, |_| true);
    assert_eq!(
        got as usize, lines,
        "pmap_mappings vs lines of /proc/{pid}/maps"
    );
    let series = prom.query(&format!("pmap_mappings{{pid=\"{pid}\"}}"));
    assert_eq!(series[0].0["comm"], "exporter_target", "{series:?}");
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let cgroup = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("");
    assert_eq!(series[0].0["cgroup"], cgroup, "{series:?}");

    let max: f64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .expect("max_map_count")
        .trim()
        .parse()
        .expect("a number");
    prom.wait_value("pmap_max_map_count", WAIT, |v| v == max);
    let ratio = prom.wait_value(
        &format!("pmap_mappings_ratio{{pid=\"{pid}\"}}"),
        WAIT,
        |_| true,
    );
    assert!((ratio - lines as f64 / max).abs() < 1e-9, "ratio {ratio}");
    // The kinds (--summary's categories) cover the whole map.
    let mapped = prom.wait_value(
        &format!("sum(pmap_mapped_bytes{{pid=\"{pid}\"}})"),
        WAIT,
        |_| true,
    );
    assert_eq!(
        mapped as u64,
        mapped_bytes(pid),
        "sum of pmap_mapped_bytes by kind"
    );
    let anon = prom.query(&format!(
        "pmap_mapped_bytes{{pid=\"{pid}\",kind=\"anonymous\"}}"
    ));
    assert!(
        anon.first().is_some_and(|(_, v)| *v >= 1500.0 * 4096.0),
        "its 1,500 read-write pages are anonymous: {anon:?}"
    );
    prom.wait_value(
        &format!("pmap_syscalls_total{{pid=\"{pid}\",syscall=\"mmap\"}}"),
        WAIT,
        |_| true,
    );
    // The exporter times itself.
    prom.wait_value("pmap_exporter_scrape_duration_seconds", WAIT, |v| v > 0.0);
    drop(prom);
    exporter.stop_cleanly(true);
}

#[test]
fn a_w_x_flip_shows_in_wx_flips_total() {
    let _serial = serial();
    // Counting starts when the exporter has attached: start it first.
    let exporter = Exporter::start(&["--comm", "exporter_target"]);
    let prom = Prometheus::start(exporter.port);
    let flipper = Target::start(&["wx", "5"]);
    let plain = Target::start(&["maps", "10"]);
    let flips = prom.wait_value(
        &format!("pmap_wx_flips_total{{pid=\"{}\"}}", flipper.pid),
        WAIT,
        |_| true,
    );
    assert_eq!(flips, 10.0, "5 rounds of rw- -> r-x -> rw- are 10 flips");
    let mprotects = prom.wait_value(
        &format!(
            "pmap_syscalls_total{{pid=\"{}\",syscall=\"mprotect\"}}",
            flipper.pid
        ),
        WAIT,
        |_| true,
    );
    assert!(mprotects >= 10.0, "mprotect calls: {mprotects}");
    let none = prom.wait_value(
        &format!("pmap_wx_flips_total{{pid=\"{}\"}}", plain.pid),
        WAIT,
        |_| true,
    );
    assert_eq!(none, 0.0, "a process that never flipped");
    // Its mmaps of 10 regions raised its region count.
    let splits = prom.wait_value(
        &format!("pmap_mapping_splits_total{{pid=\"{}\"}}", plain.pid),
        WAIT,
        |_| true,
    );
    assert!(splits >= 9.0, "pmap_mapping_splits_total {splits}");
    // --comm: nothing else is shown, not even the test itself.
    let comms = prom.query("count by (comm) (pmap_mappings{pid!=\"other\"})");
    assert!(
        comms.iter().all(|(m, _)| m["comm"] == "exporter_target"),
        "--comm exporter_target shows others: {comms:?}"
    );
    drop(prom);
    exporter.stop_cleanly(true);
}

#[test]
fn a_thousand_short_lived_processes_leave_no_series_and_no_growth() {
    let _serial = serial();
    let exporter = Exporter::start(&["--all", "--top", "2000"]);
    let prom = Prometheus::start(exporter.port);
    let mine = "pmap_mappings{comm=\"exporter_target\"}";
    let mut rss = Vec::new();
    let mut entries = Vec::new();
    // Four waves of 250: each lives until Prometheus has scraped all of
    // it, then is killed, and must leave /metrics at the next scrape.
    for wave in 0..4 {
        let targets: Vec<Target> = (0..250).map(|_| Target::start(&["hold"])).collect();
        prom.wait_value(&format!("count({mine})"), WAIT, |v| v == 250.0);
        let counted = prom.wait_value(
            "count(pmap_syscalls_total{comm=\"exporter_target\",syscall=\"mmap\"} > 0)",
            WAIT,
            |_| true,
        );
        assert_eq!(
            counted, 250.0,
            "wave {wave}: every process's mmap calls counted"
        );
        let pids: Vec<u32> = targets.iter().map(|t| t.pid).collect();
        drop(targets);
        prom.wait_empty(mine, WAIT);
        // The exporter's own view: no series, and no kernel entry, of a
        // dead process.
        let text = exporter.metrics();
        for pid in &pids {
            assert!(
                !text.contains(&format!("pid=\"{pid}\"")),
                "wave {wave}: exited process {pid} still in /metrics"
            );
        }
        entries.push(kernel_entries(&text));
        rss.push(vm_rss_kib(exporter.proc.child.id()));
    }
    eprintln!("exporter RSS after each wave: {rss:?} KiB; kernel entries: {entries:?}");
    // The first wave warms the allocator up; after it, a leak of even 2 KiB
    // per process that came and went would add 1 MiB over the last 500.
    assert!(
        rss[3] <= rss[1] + 1024,
        "exporter RSS grows with processes that came and went: {rss:?} KiB"
    );
    assert!(
        entries[3] <= entries[0] + 50,
        "kernel entries of exited processes are not removed: {entries:?}"
    );
    drop(prom);
    exporter.stop_cleanly(true);
}

/// The exporter's `pmap_exporter_kernel_processes`.
fn kernel_entries(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("pmap_exporter_kernel_processes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pmap_exporter_kernel_processes in:\n{text}"))
}

#[test]
fn unprivileged_it_polls_serves_gauges_and_names_what_it_cannot_count() {
    let _serial = serial();
    let target = Target::start_as(Some(&NOBODY), &["maps", "200"]);
    target.stop();
    let lines = maps_lines(target.pid);
    let exporter = Exporter::start_as(Some(&NOBODY), &["--all", "--top", "1000"]);
    let err = exporter.proc.stderr();
    for m in [
        "pmap_syscalls_total",
        "pmap_mapping_splits_total",
        "pmap_wx_flips_total",
        "pmap_events_lost_total",
    ] {
        assert!(err.contains(m), "stderr does not name {m}:\n{err}");
    }
    assert!(err.contains("CAP_BPF"), "stderr does not say why:\n{err}");
    let prom = Prometheus::start(exporter.port);
    let got = prom.wait_value(
        &format!("pmap_mappings{{pid=\"{}\"}}", target.pid),
        WAIT,
        |_| true,
    );
    assert_eq!(got as usize, lines, "pmap_mappings of nobody's process");
    let unavailable = prom.query("pmap_exporter_unavailable");
    assert_eq!(unavailable.len(), 4, "{unavailable:?}");
    assert!(
        prom.query("pmap_syscalls_total").is_empty(),
        "poll serves no counters"
    );
    prom.wait_value("pmap_exporter_backend{backend=\"poll\"}", WAIT, |v| {
        v == 1.0
    });
    // Root's processes cannot be read by nobody: counted, not shown.
    let unreadable = prom.wait_value(
        "pmap_exporter_processes{state=\"unreadable\"}",
        WAIT,
        |_| true,
    );
    assert!(
        unreadable >= 1.0,
        "this test runs as root: unreadable to nobody"
    );
    drop(prom);
    exporter.stop_cleanly(false);
}

#[test]
fn refuses_addresses_beyond_loopback() {
    let out = Command::new(pmap_bin())
        .args(["exporter", "--listen", "0.0.0.0:9256"])
        .output()
        .expect("pmap runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
}

#[test]
fn only_get_metrics_is_served() {
    let _serial = serial();
    let exporter = Exporter::start(&["--backend", "poll"]);
    let (code, _) = http_get(exporter.port, "/nothing").expect("answers");
    assert_eq!(code, 404);
    let text = exporter.metrics();
    assert!(text.contains("# TYPE pmap_mappings gauge"), "{text}");
    exporter.stop_cleanly(false);
}
