//! README promises about `pmap trace` that no other test held it to: the
//! smaps formats (`-X`, `-XX`) and `-k` in its tables, `--provenance`,
//! `--summary-interval`, no eBPF object left in the kernel after a trace
//! ended by `--duration`, a closed pipe or the target's exit, and polling
//! (with the reason said) on a kernel without BTF.
//!
//! Root and a real kernel are needed, as for every trace test.

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use common::layout::{self, Kind, Verdict};
use pmap_tests::trace_harness::{
    BpfObjects, Tracer, assert_table_matches, bpf_objects_of, bpftool_ids, reference_pmap, serial,
};

/// A python3 target that evaluates each line it reads on stdin and prints
/// `ok <value>`: the test drives its calls and knows when each is done.
struct Py {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
}

const PY: &str = "import sys, ctypes\n\
libc = ctypes.CDLL(None, use_errno=True)\n\
libc.mmap.restype = ctypes.c_void_p\n\
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]\n\
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]\n\
print('ready', flush=True)\n\
for line in sys.stdin:\n    print('ok', eval(line), flush=True)\n";

/// 7 pages: a size nothing else in the target maps.
const LEN: u64 = 7 * 4096;

impl Py {
    fn start() -> Py {
        let mut child = Command::new(pmap_tests::program("python3", "python3"))
            .args(["-c", PY])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 starts");
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut py = Py { child, stdin, out };
        assert_eq!(py.line(), "ready");
        py
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).expect("python3's stdout");
        l.trim_end().to_string()
    }

    /// Evaluates `expr` in the target; its value.
    fn eval(&mut self, expr: &str) -> String {
        let stdin = self.stdin.as_mut().expect("the target still reads");
        writeln!(stdin, "{expr}").expect("writing to python3");
        let l = self.line();
        l.strip_prefix("ok ")
            .unwrap_or_else(|| panic!("python3 said {l:?} to {expr:?}"))
            .to_string()
    }

    /// Maps `LEN` bytes read-write, anonymous: the address.
    fn map(&mut self) -> u64 {
        self.eval(&format!("libc.mmap(None, {LEN}, 3, 0x22, -1, 0)"))
            .parse()
            .expect("an address")
    }

    /// Makes the first page at `addr` read-only.
    fn protect(&mut self, addr: u64) {
        assert_eq!(
            self.eval(&format!("libc.mprotect({addr}, 4096, 1)")),
            "0",
            "mprotect"
        );
    }

    /// Closes its stdin: the target exits.
    fn end(&mut self) {
        self.stdin = None;
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_row(l: &str) -> bool {
    l.len() > 17 && l.as_bytes()[16] == b' ' && l[..16].bytes().all(|c| c.is_ascii_hexdigit())
}

/// Rows of a table that a call can make or change: all but `[vsyscall]`,
/// the kernel's fixed page outside the process's own mappings.
fn mappable_rows(body: &[String]) -> usize {
    body.iter()
        .filter(|l| is_row(l) && !l.starts_with("ffffffffff600000 "))
        .count()
}

/// Waits for a stdout line of the tracer containing `text`.
fn wait_line(t: &Tracer, text: &str) -> String {
    t.wait_stdout(Duration::from_secs(30), |l| l.contains(text))
        .unwrap_or_else(|| panic!("no line with {text:?}\n{}", t.context()))
}

#[test]
fn provenance_names_the_calls_that_made_and_changed_each_region() {
    let _serial = serial();
    let mut py = Py::start();
    let pid = py.pid();
    let mut t = Tracer::spawn(&["--provenance", &pid.to_string()]);
    t.wait_tracing(Duration::from_secs(60));
    let initial = t.next_table(pid, "initial", Duration::from_secs(30));
    let rows = mappable_rows(&initial.body);
    let out = t.stdout();
    // The table's footer, then the provenance of its regions: at the start
    // every one is unchanged.
    let end = out[initial.line..]
        .iter()
        .position(|l| l == "--- end table ---")
        .expect("end of the initial table")
        + initial.line;
    assert_eq!(
        out.get(end + 1).map(String::as_str),
        Some(
            format!("    provenance: {rows} region(s) unchanged since the trace started").as_str()
        ),
        "{}",
        t.context()
    );

    let addr = py.map();
    py.protect(addr);
    // The tracer has the mprotect once its delta is printed.
    wait_line(&t, &format!(" mprotect(0x{addr:x}, 4096, r--)"));
    let table = t.request_table(pid);
    let rows = mappable_rows(&table.body);
    // The provenance lines follow the table's frame, written with it; the
    // harness's reader may append them a moment after the frame. Wait for
    // the block to hold both our region's line and the unchanged count.
    let ours_line = format!("    provenance {addr:016x} ");
    let block_done = |out: &[String]| {
        let block: Vec<&String> = out[table.line..]
            .iter()
            .skip_while(|l| *l != "--- end table ---")
            .skip(1)
            .take_while(|l| l.starts_with("    provenance"))
            .collect();
        block.iter().any(|l| l.starts_with(&ours_line))
            && block.iter().any(|l| l.starts_with("    provenance: "))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !block_done(&t.stdout()) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = t.stdout();
    let after: Vec<&String> = out[table.line..]
        .iter()
        .skip_while(|l| *l != "--- end table ---")
        .skip(1)
        .take_while(|l| l.starts_with("    provenance"))
        .collect();
    let ours = after
        .iter()
        .find(|l| l.starts_with(&format!("    provenance {addr:016x} ")))
        .unwrap_or_else(|| panic!("no provenance of {addr:#x}:\n{}", t.context()));
    let tid = format!("tid {pid} ");
    let (created, changed) = ours.split_once("; changed ").unwrap_or_else(|| {
        panic!("{ours:?}: the mprotect changed it");
    });
    assert!(
        created.contains(" 4K r--p created +") && created.ends_with(&format!("{tid}mmap")),
        "{ours:?}"
    );
    assert!(
        changed.starts_with('+') && changed.ends_with(&format!("{tid}mprotect")),
        "{ours:?}"
    );
    // Every region is accounted for: a line each, or in the unchanged count.
    let listed = after
        .iter()
        .filter(|l| l.starts_with("    provenance 0"))
        .count();
    let unchanged: usize = after
        .iter()
        .find_map(|l| l.strip_prefix("    provenance: "))
        .and_then(|l| l.split(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert_eq!(
        listed + unchanged,
        rows,
        "provenance of {rows} regions:\n{}",
        t.context()
    );
    py.end();
    let status = t.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", t.context());
}

/// `--- summary pid P +1.234s ---` -> 1.234.
fn summary_time(l: &str) -> f64 {
    l.rsplit_once(" +")
        .and_then(|(_, t)| t.trim_end_matches("s ---").parse().ok())
        .unwrap_or_else(|| panic!("no time in {l:?}"))
}

/// The `calls:` count of `name` in the summary starting at line `at`.
fn calls(out: &[String], at: usize, name: &str) -> u64 {
    out[at..]
        .iter()
        .take_while(|l| *l != "--- end summary ---")
        .find_map(|l| l.strip_prefix("calls: "))
        .and_then(|c| {
            c.split(", ")
                .find_map(|kv| kv.strip_prefix(&format!("{name} "))?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn summary_interval_prints_summaries_while_the_target_runs() {
    let _serial = serial();
    let mut py = Py::start();
    let pid = py.pid();
    let mut t = Tracer::spawn(&["--summary-interval", "0.5", &pid.to_string()]);
    t.wait_tracing(Duration::from_secs(60));
    let header = format!("--- summary pid {pid} +");
    wait_line(&t, &header);
    let addr = py.map();
    let delta = format!(" mmap(NULL, {LEN}, rw-, PRIVATE|ANONYMOUS, -1, 0x0) = 0x{addr:x}");
    wait_line(&t, &delta);
    // A summary printed after that call, while the target still runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (out, at_delta) = loop {
        let out = t.stdout();
        let at_delta = out.iter().position(|l| l.contains(&delta)).expect("seen");
        if out[at_delta..].iter().any(|l| l.starts_with(&header)) {
            break (out, at_delta);
        }
        assert!(
            Instant::now() < deadline,
            "no summary after the mmap\n{}",
            t.context()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let summaries: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].starts_with(&header))
        .collect();
    let (before, after): (Vec<usize>, Vec<usize>) = summaries.iter().partition(|&&i| i < at_delta);
    assert!(!before.is_empty() && !after.is_empty(), "{}", t.context());
    // They come on a 0.5 s tick (a late one does not move the next), so
    // the k-th is printed no sooner than k intervals into the trace; and
    // each counts the calls made so far.
    for (k, &i) in summaries.iter().enumerate() {
        let at = summary_time(&out[i]);
        let due = 0.5 * (k + 1) as f64;
        assert!(
            at >= due - 0.01,
            "summary {} at +{at}s, due +{due}s\n{}",
            k + 1,
            t.context()
        );
    }
    let (first, next) = (before[before.len() - 1], after[0]);
    assert_eq!(
        calls(&out, next, "mmap"),
        calls(&out, first, "mmap") + 1,
        "the mmap between two summaries\n{}",
        t.context()
    );
    py.end();
    let status = t.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", t.context());
}

/// How a cell of the tracer's smaps table compares with procps-ng's:
/// Pss and the sharing split change with every process mapping the same
/// files (the tracer and procps-ng's pmap map different ones), and
/// procps-ng totals page sizes where we leave them blank (README).
fn kind(row: Option<&[u8]>, name: &[u8]) -> Kind {
    let moving = name.starts_with(b"Pss")
        || name == b"SwapPss"
        || [
            &b"Shared_Clean"[..],
            b"Shared_Dirty",
            b"Private_Clean",
            b"Private_Dirty",
            b"Referenced",
        ]
        .contains(&name);
    if moving || (row.is_none() && layout::NO_TOTAL.contains(&name)) {
        Kind::Masked
    } else {
        Kind::Fixed
    }
}

/// `-X`, `-XX` (with `-q`) and `-k` tables of a stopped target: procps-ng's,
/// cell for cell and width for width (-X, -XX) or byte for byte (-k, with
/// the kernel's names procps-ng 4.0.6 prints).
#[test]
fn smaps_formats_and_kernel_names_in_trace_tables() {
    let _serial = serial();
    let py = Py::start();
    let pid = py.pid();
    common::stop(pid);
    let p = pid.to_string();
    for flags in [&["-X"][..], &["-XX"], &["-XX", "-q"]] {
        let names = {
            let plain: Vec<&str> = flags.iter().copied().filter(|f| *f != "-q").collect();
            let heading = reference_pmap(pid, &plain)
                .into_iter()
                .find(|l| l.trim_start().starts_with("Address"))
                .expect("procps-ng's heading");
            layout::columns(heading.as_bytes())
        };
        let mut args = flags.to_vec();
        args.push(&p);
        let mut t = Tracer::spawn(&args);
        t.wait_tracing(Duration::from_secs(60));
        let table = t.next_table(pid, "initial", Duration::from_secs(30));
        let text = |ls: &[String]| -> Vec<u8> {
            ls.iter()
                .flat_map(|l| format!("{l}\n").into_bytes())
                .collect()
        };
        let (ours, theirs) = (text(&table.body), text(&reference_pmap(pid, flags)));
        for (who, out) in [("the tracer's", &ours), ("procps-ng's", &theirs)] {
            if let Err(e) = layout::check_widths(out, &names, &[]) {
                panic!("{flags:?}: {who} column widths: {e}\n{}", t.context());
            }
        }
        match layout::compare(&theirs, &ours, &names, true, &kind) {
            Verdict::Same => {}
            Verdict::Moved(e) | Verdict::Differ(e) => panic!("{flags:?}: {e}\n{}", t.context()),
        }
        t.signal(libc::SIGINT);
        assert!(t.wait_exit(Duration::from_secs(20)).success());
    }

    // -k: procps-ng 4.0.2's table with each bracketed kernel name in place
    // of `[ anon ]`/`[ stack ]` (31: where the default format's name starts).
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let names: Vec<&str> = maps
        .lines()
        .map(|l| l.splitn(6, ' ').nth(5).unwrap_or("").trim_start())
        .collect();
    let mut i = 0;
    let expected: Vec<String> = reference_pmap(pid, &[])
        .into_iter()
        .map(|l| {
            if !is_row(&l) {
                return l;
            }
            let name = names[i];
            i += 1;
            if !name.contains('/') && name.starts_with('[') && name.ends_with(']') {
                format!("{}{name}", &l[..31])
            } else {
                l
            }
        })
        .collect();
    assert!(
        expected
            .iter()
            .any(|l| l.ends_with(" [heap]") || l.ends_with(" [stack]")),
        "no kernel name to show: {expected:#?}"
    );
    let mut t = Tracer::spawn(&["-k", &p]);
    t.wait_tracing(Duration::from_secs(60));
    let table = t.next_table(pid, "initial", Duration::from_secs(30));
    assert_table_matches(&table, &expected, "-k initial table", &t);
    let table = t.request_table(pid);
    assert_table_matches(&table, &expected, "-k SIGUSR1 table", &t);
    t.signal(libc::SIGINT);
    assert!(t.wait_exit(Duration::from_secs(20)).success());
}

/// What the tracer holds while tracing (it must hold programs).
fn held(t: &Tracer) -> BpfObjects {
    let h = bpf_objects_of(t.pid());
    assert!(
        !h.progs.is_empty() && !h.links.is_empty(),
        "the tracer holds no eBPF program or link while tracing: {h:?}\n{}",
        t.context()
    );
    h
}

/// None of `held` is listed by bpftool any more. The kernel frees them
/// from a work queue after the last descriptor closes (README: it can take
/// a second), so this waits up to 10 s before calling anything a leak.
fn assert_released(held: &BpfObjects, how: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = BpfObjects {
            progs: still(&held.progs, "prog"),
            links: still(&held.links, "link"),
            maps: still(&held.maps, "map"),
        };
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{how}: eBPF objects of the tracer remain 10 s after it exited: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn still(ids: &[u64], kind: &str) -> Vec<u64> {
    let now = bpftool_ids(kind);
    ids.iter().copied().filter(|id| now.contains(id)).collect()
}

#[test]
fn no_bpf_object_left_after_duration() {
    let _serial = serial();
    let py = Py::start();
    let mut t = Tracer::spawn(&["--duration", "1", &py.pid().to_string()]);
    t.wait_tracing(Duration::from_secs(60));
    let h = held(&t);
    let status = t.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", t.context());
    assert!(t.stdout().iter().any(|l| l.starts_with("--- summary pid")));
    assert_released(&h, "--duration");
}

#[test]
fn no_bpf_object_left_after_the_target_exits() {
    let _serial = serial();
    let mut py = Py::start();
    let pid = py.pid();
    let mut t = Tracer::spawn(&[&pid.to_string()]);
    t.wait_tracing(Duration::from_secs(60));
    let h = held(&t);
    py.end();
    let status = t.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", t.context());
    wait_line(&t, &format!(" pid {pid} exited"));
    assert_released(&h, "target exit");
}

#[test]
fn no_bpf_object_left_after_the_output_closes() {
    let _serial = serial();
    let mut py = Py::start();
    let pid = py.pid();
    let (reader, writer) = std::io::pipe().expect("a pipe");
    let mut t = Tracer::spawn_with_stdout(&[&pid.to_string()], Stdio::from(writer));
    t.wait_tracing(Duration::from_secs(60));
    let h = held(&t);
    // Read the initial table, then close the pipe like `| head` does.
    let mut reader = BufReader::new(reader);
    let mut line = String::new();
    while !line.starts_with("--- end table ---") {
        line.clear();
        assert!(reader.read_line(&mut line).expect("the tracer's output") > 0);
    }
    drop(reader);
    // Something to write: a delta, and a table.
    let addr = py.map();
    t.signal(libc::SIGUSR1);
    let status = t.wait_exit(Duration::from_secs(20));
    assert!(
        status.success(),
        "closed output (after a mmap at {addr:#x}): {status}\n{}",
        t.stderr().join("\n")
    );
    let noise: Vec<String> = t
        .stderr()
        .into_iter()
        .filter(|l| l.contains("panicked") || l.contains("Broken pipe"))
        .collect();
    assert!(noise.is_empty(), "{noise:?}");
    assert_released(&h, "closed output");
}

/// `pmap trace ARGS` where `/sys/kernel/btf/vmlinux` does not exist: a
/// private mount namespace with an empty tmpfs over `/sys/kernel/btf`,
/// the view of a kernel built without BTF.
fn without_btf(args: &[&str]) -> Command {
    let script = "mount -t tmpfs none /sys/kernel/btf && exec \"$@\"";
    let mut c = Command::new(pmap_tests::tool("unshare", "util-linux"));
    c.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(pmap_tests::pmap_bin())
    .arg("trace")
    .args(args)
    .stdin(Stdio::null());
    c
}

/// README: without BTF `pmap trace` polls instead and says why;
/// `--backend ebpf` fails with that reason.
#[test]
fn without_btf_it_polls_and_says_why() {
    let _serial = serial();
    let mut py = Py::start();
    let pid = py.pid().to_string();
    let mut tracer = without_btf(&["--duration", "2", "--poll-interval", "0.1", &pid])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare runs");
    // The target maps memory once the tracer is tracing (a line read).
    let mut err = BufReader::new(tracer.stderr.take().expect("piped stderr"));
    let mut stderr = String::new();
    while !stderr.contains("pmap trace: tracing") {
        let n = err.read_line(&mut stderr).expect("the tracer's stderr");
        assert!(n > 0, "the tracer ended before tracing: {stderr}");
    }
    let addr = py.map();
    let out = tracer.wait_with_output().expect("the tracer ends");
    std::io::Read::read_to_string(&mut err, &mut stderr).expect("the tracer's stderr");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("eBPF cannot be used here"), "{stderr}");
    assert!(stderr.contains("this kernel has no BTF"), "{stderr}");
    assert!(stderr.contains("(poll: every 0.1s)"), "{stderr}");
    assert!(
        stdout.contains("observed by polling") && stdout.contains(&format!("{addr:016x}")),
        "no polled delta of the mmap at {addr:#x}:\n{stdout}"
    );

    let out = without_btf(&["--backend", "ebpf", "--duration", "1", &pid])
        .output()
        .expect("unshare runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("this kernel has no BTF"), "{stderr}");
    assert!(stderr.contains("--backend poll"), "{stderr}");
}
