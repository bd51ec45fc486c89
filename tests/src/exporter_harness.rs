//! Helpers of the `pmap exporter` tests (tests/tests/exporter.rs): the
//! exporter, a real Prometheus server and target processes, each stopped
//! when dropped, and the few /proc facts the tests compare against.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::trace_harness::{bpf_objects_of, bpftool_ids};
use crate::{pmap_bin, tool, workload_bin};

pub const NOBODY: [&str; 3] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];

/// A loopback port free now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding an ephemeral port on 127.0.0.1")
        .port()
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
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
pub fn http_get(port: u16, target: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

pub fn percent_encode(s: &str) -> String {
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
pub struct Logged {
    pub child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Logged {
    pub fn spawn(mut cmd: Command) -> Logged {
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

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn wait_stderr(&mut self, needle: &str, within: Duration) {
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

    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
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
pub struct Exporter {
    pub proc: Logged,
    pub port: u16,
}

impl Exporter {
    pub fn start(args: &[&str]) -> Exporter {
        Exporter::start_as(None, args)
    }

    /// Started through `setpriv` with `user` options when given.
    pub fn start_as(user: Option<&[&str]>, args: &[&str]) -> Exporter {
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

    pub fn metrics(&self) -> String {
        let (code, body) = http_get(self.port, "/metrics").expect("GET /metrics answers");
        assert_eq!(code, 200, "GET /metrics: {body}");
        body
    }

    /// SIGTERM: exits 0, and every eBPF program, link and map it held
    /// (`ebpf`: it must hold some) is gone from the kernel. Its own
    /// objects, not a before/after diff of the kernel's lists, so that
    /// other eBPF users on the machine cannot make this fail or pass.
    pub fn stop_cleanly(mut self, ebpf: bool) {
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

/// A Prometheus server on 127.0.0.1 scraping `target_port` every 500 ms
/// ([`Prometheus::start_every`] for another interval).
pub struct Prometheus {
    pub proc: Logged,
    pub port: u16,
    _dir: TempDir,
}

impl Prometheus {
    pub fn start(target_port: u16) -> Prometheus {
        Prometheus::start_every(target_port, Duration::from_millis(500))
    }

    /// Scraping every `every`, which is also the scrape timeout.
    pub fn start_every(target_port: u16, every: Duration) -> Prometheus {
        let every = every.as_millis();
        let bin = tool("prometheus", "prometheus");
        let dir = TempDir::new("prometheus");
        let port = free_port();
        let config = dir.0.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {every}ms\n  scrape_timeout: {every}ms\n\
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
    pub fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
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
    pub fn wait_value(&self, promql: &str, within: Duration, ok: impl Fn(f64) -> bool) -> f64 {
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
    pub fn wait_empty(&self, promql: &str, within: Duration) {
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
pub struct Target {
    child: Child,
    pub pid: u32,
}

impl Target {
    pub fn start(args: &[&str]) -> Target {
        Target::start_as(None, args)
    }

    pub fn start_as(user: Option<&[&str]>, args: &[&str]) -> Target {
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

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.pid as i32, sig) };
    }

    /// Waits until /proc says the process is stopped (state T).
    pub fn stop(&self) {
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

pub fn proc_state(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .map(|(_, r)| r.chars().take(1).collect())
        .unwrap_or_default()
}

pub fn maps_lines(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/maps: {e}"))
        .lines()
        .count()
}

/// Sum of region sizes in /proc/PID/maps.
pub fn mapped_bytes(pid: u32) -> u64 {
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

pub fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS in status")
}

/// A cgroup v2 directory made for a test, with one child (`inner`);
/// removed on drop (after its processes are gone: drop them first).
pub struct TestCgroup {
    /// Where it is, e.g. /sys/fs/cgroup/unified/pmap-exporter-test-123.
    pub dir: PathBuf,
    /// Its path as /proc/PID/cgroup shows it.
    pub path: String,
}

impl TestCgroup {
    pub fn new() -> TestCgroup {
        let mounts =
            std::fs::read_to_string("/proc/self/mounts").expect("reading /proc/self/mounts");
        let mount = mounts
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .find(|f| f.get(2) == Some(&"cgroup2"))
            .and_then(|f| f.get(1).map(|m| m.to_string()))
            .expect("no cgroup v2 hierarchy mounted (needs a kernel with cgroup2)");
        let name = format!("pmap-exporter-test-{}", std::process::id());
        let dir = PathBuf::from(mount).join(&name);
        std::fs::create_dir_all(dir.join("inner"))
            .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", dir.display()));
        TestCgroup {
            dir,
            path: format!("/{name}"),
        }
    }

    /// Moves `pid` into the cgroup (`inner`: into its child).
    pub fn adopt(&self, pid: u32, inner: bool) {
        let dir = if inner {
            self.dir.join("inner")
        } else {
            self.dir.clone()
        };
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", dir.display()));
    }
}

impl Default for TestCgroup {
    fn default() -> Self {
        TestCgroup::new()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // A cgroup can be removed once its processes are reaped.
        for _ in 0..50 {
            let _ = std::fs::remove_dir(self.dir.join("inner"));
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
