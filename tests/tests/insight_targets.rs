//! `pmap trace` insight features on real programs (root, real kernel):
//! call sites and W^X flips of a tiny JIT, churn and its tuning hint,
//! glibc arenas and thread stacks in python3, V8 JIT symbols in node,
//! HotSpot's code cache and heap reservation, and the HTML report.

use std::process::{Command, Stdio};

use pmap_tests::{browser::chromium, pmap_bin, workload_bin};
use serde_json::json;

/// Runs `pmap trace OPTIONS -- COMMAND` to the end; returns stdout.
fn trace(opts: &[&str], command: &[&str]) -> String {
    trace_in(&std::env::temp_dir(), opts, command)
}

/// The same, in directory `dir`.
fn trace_in(dir: &std::path::Path, opts: &[&str], command: &[&str]) -> String {
    let out = Command::new(pmap_bin())
        .current_dir(dir)
        .arg("trace")
        .args(opts)
        .arg("--")
        .args(command)
        .stdin(Stdio::null())
        .output()
        .expect("run pmap trace");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pmap trace failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The interpreters the tests trace, found on PATH (as ELF programs).
fn python3() -> String {
    pmap_tests::program("python3", "python3")
        .to_string_lossy()
        .into_owned()
}

fn node() -> String {
    pmap_tests::program("node", "nodejs")
        .to_string_lossy()
        .into_owned()
}

/// Delta blocks: a `+T pid ...` line and the lines under it.
fn deltas(out: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    for line in out.lines() {
        if line.starts_with('+') {
            blocks.push(format!("{line}\n"));
        } else if line.starts_with(' ')
            && let Some(b) = blocks.last_mut()
        {
            b.push_str(line);
            b.push('\n');
        } else if line.starts_with("---") {
            blocks.push(String::new());
        }
    }
    blocks.retain(|b| !b.is_empty());
    blocks
}

#[test]
fn tiny_jit_every_flip_is_reported_with_its_call_site() {
    let bin = workload_bin("tiny_jit");
    let rounds = 30;
    let out = trace(
        &["--stacks", "--no-initial-table"],
        // No pause between calls: flips are followed from the calls
        // themselves, so the tracer need not look before the next flip.
        &[bin.to_str().expect("utf8 path"), &rounds.to_string(), "0"],
    );
    let blocks = deltas(&out);
    let to_x: Vec<&String> = blocks
        .iter()
        .filter(|b| b.contains("mprotect(") && b.contains(", 4096, r-x) = 0"))
        .collect();
    let to_w: Vec<&String> = blocks
        .iter()
        .filter(|b| b.contains("mprotect(") && b.contains(", 4096, rw-) = 0"))
        .collect();
    assert_eq!(
        to_x.len(),
        2 * rounds,
        "every mprotect r-x is a delta:\n{out}"
    );
    assert_eq!(to_w.len(), rounds, "every mprotect rw- is a delta:\n{out}");
    for b in to_x {
        assert!(b.contains("W^X: W->X flip of"), "flip not flagged:\n{b}");
        assert!(
            b.contains("at tiny_jit::jit_make_executable+"),
            "call site not named:\n{b}"
        );
        assert!(b.contains("by tiny_jit::jit_make_executable+"), "{b}");
        // Unwound with call-frame information, the stack is whole (to
        // `_start`, see the JSON test) and deeper than --stack-depth: no
        // cut is stated.
        assert!(!b.contains("(stack truncated"), "{b}");
    }
    for b in to_w {
        assert!(b.contains("W^X: X->W flip of"), "flip not flagged:\n{b}");
        assert!(b.contains("at tiny_jit::jit_make_writable+"), "{b}");
    }
    // The page is mapped by jit_alloc_rw.
    assert!(
        blocks
            .iter()
            .any(|b| b.contains("mmap(NULL, 4096, rw-") && b.contains("tiny_jit::jit_alloc_rw+")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "W^X: {} W->X flips, {} X->W flips",
            2 * rounds,
            rounds
        )),
        "summary:\n{out}"
    );
}

#[test]
fn a_file_mapped_shared_writable_and_executable_is_flagged() {
    let script = "import mmap, os, tempfile, time\n\
                  fd, path = tempfile.mkstemp(prefix='pmap-dual-')\n\
                  os.ftruncate(fd, 4096)\n\
                  w = mmap.mmap(fd, 4096, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)\n\
                  time.sleep(0.05)\n\
                  x = mmap.mmap(fd, 4096, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_EXEC)\n\
                  time.sleep(0.3)\n\
                  os.unlink(path)\n";
    let out = trace(&["--no-initial-table"], &[&python3(), "-c", script]);
    let blocks = deltas(&out);
    let flagged: Vec<&String> = blocks
        .iter()
        .filter(|b| b.contains("is mapped shared-writable at"))
        .collect();
    assert_eq!(flagged.len(), 1, "{out}");
    assert!(
        flagged[0].contains("mmap(NULL, 4096, r-x, SHARED"),
        "{}",
        flagged[0]
    );
    assert!(
        out.contains("file mapped shared-writable and executable: /tmp/pmap-dual-"),
        "{out}"
    );
    // Shared libraries (private rw- and r-x of one file) are not flagged.
    assert!(
        !out.contains("libc.so.6 is mapped shared-writable"),
        "{out}"
    );
}

#[test]
fn a_writable_and_executable_region_is_flagged_and_timed() {
    let script = "import mmap, time\n\
                  m = mmap.mmap(-1, 8192, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n\
                  time.sleep(0.3)\n\
                  m.close()\n\
                  time.sleep(0.2)\n";
    let out = trace(&["--no-initial-table"], &[&python3(), "-c", script]);
    let blocks = deltas(&out);
    assert!(
        blocks.iter().any(|b| b.contains("mmap(NULL, 8192, rwx")
            && b.contains("is writable and executable at once (rwx)")),
        "{out}"
    );
    assert!(
        out.contains("1 times a region became writable+executable"),
        "{out}"
    );
    // Python's anonymous mmap is shared (/dev/zero); one region both
    // writable and executable is not a "file mapped twice".
    assert!(!out.contains("is mapped shared-writable"), "{out}");
    // The summary row for it: unmapped, with at least the 0.3 s it lived.
    let row = out
        .lines()
        .find(|l| l.contains(" rwx: 0 flips"))
        .expect("a W^X row for the region");
    let secs: f64 = row
        .split(", ")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok())
        .expect("time rwx");
    assert!((0.25..5.0).contains(&secs), "{row}");
    assert!(row.contains("(unmapped at +"), "{row}");
}

#[test]
fn churn_is_detected_with_the_tuning_hint() {
    let bin = workload_bin("churn");
    let out = trace(
        &["--stacks", "--no-initial-table"],
        &[bin.to_str().expect("utf8 path"), "30", "262144"],
    );
    assert!(
        out.contains("churn: 256K mapped and unmapped again 8 times, each within 1s"),
        "inline churn note:\n{out}"
    );
    assert!(out.contains("256K mapped and unmapped 30 times"), "{out}");
    assert!(
        out.contains("MALLOC_MMAP_THRESHOLD_=266240")
            && out.contains("mallopt(M_MMAP_THRESHOLD, 266240)"),
        "hint:\n{out}"
    );
    let sites = out
        .split("top call sites by calls:")
        .nth(1)
        .expect("call sites section");
    let first = sites.lines().nth(1).expect("a call site");
    assert!(
        first.contains("30 calls") && first.contains("churn::main+"),
        "top call site: {first}"
    );
}

/// The `delta` records of a `--json` trace (the workload shares stdout:
/// its own lines are not JSON objects).
fn json_deltas(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("each line is JSON"))
        .filter(|v| v["type"] == "delta")
        .collect()
}

/// The notes of `kind` in a delta record.
fn notes_of<'a>(d: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    d["notes"]
        .as_array()
        .expect("every delta has a notes array")
        .iter()
        .filter(|n| n["kind"] == kind)
        .collect()
}

#[test]
fn json_deltas_carry_the_stack_call_site_and_wx_notes() {
    let bin = workload_bin("tiny_jit");
    let rounds = 5;
    let out = trace(
        // Deep enough to show every captured frame, so whether the stack
        // is whole is reported.
        &[
            "--json",
            "--stacks",
            "--stack-depth",
            "16",
            "--no-initial-table",
        ],
        &[bin.to_str().expect("utf8 path"), &rounds.to_string(), "0"],
    );
    let deltas = json_deltas(&out);
    // PROT_READ | PROT_EXEC on the JIT's page.
    let to_x: Vec<&serde_json::Value> = deltas
        .iter()
        .filter(|d| d["syscall"] == "mprotect" && d["args"][1] == 4096 && d["args"][2] == 5)
        .collect();
    assert_eq!(to_x.len(), 2 * rounds, "{out}");
    for d in to_x {
        let page = d["args"][0].as_u64().expect("address");
        let frames = d["frames"].as_array().expect("frames with --stacks");
        assert!(
            frames[0]["name"]
                .as_str()
                .is_some_and(|n| n.contains("mprotect")),
            "innermost frame is the libc wrapper: {d}"
        );
        for f in frames {
            let addr = f["addr"].as_str().expect("hex address");
            assert!(addr.starts_with("0x") && u64::from_str_radix(&addr[2..], 16).is_ok());
        }
        assert!(
            frames.iter().any(|f| f["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("tiny_jit::jit_make_executable+"))),
            "the wrapper's caller is named: {d}"
        );
        let site = d["call_site"].as_str().expect("a call site");
        assert!(site.starts_with("tiny_jit::jit_make_executable+"), "{d}");
        // Rust's std and glibc's start code have no frame pointers, but
        // call-frame information: the unwind reaches _start, and says the
        // stack is whole (`stack` holds every frame, innermost first).
        assert_eq!(d["frames_hidden"], 0, "{d}");
        assert_eq!(d["stack_truncated"], false, "{d}");
        let last = frames.last().and_then(|f| f["name"].as_str()).unwrap_or("");
        assert!(last.starts_with("_start+"), "{d}");
        assert_eq!(
            d["stack"].as_array().map(Vec::len),
            Some(frames.len()),
            "{d}"
        );
        let flips = notes_of(d, "wx_flip");
        assert_eq!(flips.len(), 1, "one W->X flip: {d}");
        let f = flips[0];
        assert_eq!(f["flip"], "W->X");
        assert_eq!((&f["before"], &f["after"]), (&json!("rw-"), &json!("r-x")));
        assert_eq!(f["start"], format!("{page:#x}"));
        assert_eq!(f["end"], format!("{:#x}", page + 4096));
        assert_eq!(f["size"], 4096);
        assert!(f["count"].as_u64().is_some_and(|c| c % 2 == 1), "{f}");
        assert_eq!(f["site"], site);
        // The text is the line text mode prints under the delta.
        let text = f["text"].as_str().expect("text");
        assert!(
            text.starts_with(&format!(
                "W^X: W->X flip of {page:016x}+4K rw- -> r-x (flip #"
            )) && text.ends_with(&format!(" by {site}")),
            "{text}"
        );
    }
    // Without --stacks the stack keys are absent; notes are still there.
    let out = trace(
        &["--json", "--no-initial-table"],
        &[bin.to_str().expect("utf8 path"), "1", "0"],
    );
    let deltas = json_deltas(&out);
    assert!(deltas.iter().all(|d| d.get("frames").is_none()
        && d.get("call_site").is_none()
        && d["notes"].is_array()));
    let flip = deltas
        .iter()
        .flat_map(|d| notes_of(d, "wx_flip"))
        .find(|n| n["flip"] == "X->W")
        .expect("an X->W flip note");
    assert_eq!(flip["site"], serde_json::Value::Null);
}

#[test]
fn json_deltas_carry_churn_and_rwx_notes() {
    let bin = workload_bin("churn");
    let out = trace(
        &["--json", "--stacks", "--no-initial-table"],
        &[bin.to_str().expect("utf8 path"), "12", "262144"],
    );
    let churn: Vec<serde_json::Value> = json_deltas(&out)
        .iter()
        .flat_map(|d| notes_of(d, "churn"))
        .cloned()
        .collect();
    assert_eq!(
        churn.len(),
        1,
        "one churn note, when the pattern is seen:\n{out}"
    );
    let c = &churn[0];
    assert_eq!(
        (&c["size"], &c["count"], &c["within_s"]),
        (&json!(262144), &json!(8), &json!(1))
    );
    let hint = c["hint"].as_str().expect("a tuning hint");
    assert!(hint.contains("MALLOC_MMAP_THRESHOLD_=266240"), "{hint}");
    assert!(c["text"].as_str().is_some_and(|t| {
        t.starts_with("churn: 256K mapped and unmapped again 8 times, each within 1s; ")
    }));

    let script = "import mmap, time\n\
                  m = mmap.mmap(-1, 8192, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n\
                  time.sleep(0.2)\n";
    let out = trace(
        &["--json", "--no-initial-table"],
        &[&python3(), "-c", script],
    );
    let deltas = json_deltas(&out);
    let d = deltas
        .iter()
        .find(|d| d["syscall"] == "mmap" && d["args"][1] == 8192 && d["args"][2] == 7)
        .expect("the rwx mmap");
    let rwx = notes_of(d, "wx_rwx");
    assert_eq!(rwx.len(), 1, "{d}");
    let addr = d["ret"].as_u64().expect("mapped address");
    assert_eq!(rwx[0]["start"], format!("{addr:#x}"));
    assert_eq!(rwx[0]["size"], 8192);
}

#[test]
fn python_threads_show_glibc_arenas_and_thread_stacks() {
    // The threads' stack size is set, not glibc's default (`ulimit -s`).
    let script = "import threading, time\n\
                  threading.stack_size(8 << 20)\n\
                  def work():\n    bufs = [bytearray(200_000) for _ in range(20)]\n    time.sleep(0.5)\n\
                  ts = [threading.Thread(target=work) for _ in range(4)]\n\
                  [t.start() for t in ts]\n[t.join() for t in ts]\ntime.sleep(0.3)\n";
    let out = trace(&["--no-initial-table"], &[&python3(), "-c", script]);
    let structures = out
        .split("recognised structures:")
        .nth(1)
        .expect("structures section");
    let arenas = structures.matches("glibc arena heap").count();
    let stacks = structures.matches("thread stack").count();
    assert!(arenas >= 4, "{arenas} arenas:\n{structures}");
    assert!(stacks >= 4, "{stacks} thread stacks:\n{structures}");
    assert!(structures.contains("8M stack + 4K guard"), "{structures}");
    // glibc reserves 64M per arena heap; the threads used a little of it
    // (how much depends on the Python and glibc versions).
    let tails: Vec<f64> = structures
        .split("M reserved tail")
        .filter_map(|before| before.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(
        !tails.is_empty() && tails.iter().all(|t| (60.0..64.0).contains(t)),
        "reserved tails {tails:?}:\n{structures}"
    );
}

#[test]
fn node_jit_regions_are_named_with_v8_symbols() {
    let dir = std::env::temp_dir().join(format!("pmap-insight-node-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script = dir.join("hot.js");
    std::fs::write(
        &script,
        // Many distinct hot functions, so that V8's buffered perf map
        // writes reach the file while the program runs.
        "let t = 0;\n\
         for (let k = 0; k < 400; k++) {\n\
           const f = eval(`(function hotLoop_${k}(n) { let s = 0; for (let i = 0; i < n; i++) s += (i * 7) % ${k + 2}; return s; })`);\n\
           for (let j = 0; j < 200; j++) t += f(500);\n\
         }\n\
         setTimeout(() => console.log('done', t), 1500);\n",
    )
    .expect("write script");
    let out = trace(
        &["--no-initial-table", "--interval", "0.5"],
        &[
            &node(),
            "--perf-basic-prof",
            script.to_str().expect("utf8 path"),
        ],
    );
    let jit_lines: Vec<&str> = out
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("JIT "))
        .collect();
    assert!(!jit_lines.is_empty(), "no JIT lines after tables:\n{out}");
    assert!(
        jit_lines
            .iter()
            .any(|l| l.contains("JIT function") && l.contains("JS:")),
        "{jit_lines:?}"
    );
    assert!(
        jit_lines.iter().any(|l| l.contains("hotLoop_")),
        "our hot function is not named anywhere"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn node_jitdump_is_found_through_its_mapping_and_read() {
    let dir = std::env::temp_dir().join(format!("pmap-insight-jitdump-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // V8 --perf-prof writes jit-PID.dump in the current directory and maps
    // it; the tracer finds it from that mapping.
    let script = "let t = 0;\n\
                  for (let k = 0; k < 200; k++) {\n\
                    const f = eval(`(function dumped_${k}(n) { let s = 0; for (let i = 0; i < n; i++) s += i % ${k + 2}; return s; })`);\n\
                    for (let j = 0; j < 200; j++) t += f(500);\n\
                  }\n\
                  setTimeout(() => console.log('done', t), 1200);\n";
    let out = trace_in(
        &dir,
        &["--no-initial-table", "--interval", "0.4"],
        &[&node(), "--perf-prof", "-e", script],
    );
    let jit_lines: Vec<&str> = out
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("JIT "))
        .collect();
    assert!(
        jit_lines
            .iter()
            .any(|l| l.contains("JIT function") && l.contains("JS:")),
        "no V8 names after tables:\n{jit_lines:?}"
    );
    // They came from the jitdump (--perf-prof writes no perf map), which
    // held at least our 200 functions.
    let source = out
        .lines()
        .find(|l| l.starts_with("JIT: "))
        .expect("JIT summary line");
    assert!(
        source.contains("/jit-") && source.contains(".dump: ") && !source.contains("perf-"),
        "{source}"
    );
    let read: u64 = source
        .split(".dump: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("functions read");
    assert!(read >= 200, "{source}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn java_code_cache_and_heap_reservation_are_recognised() {
    let dir = std::env::temp_dir().join(format!("pmap-insight-java-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let src = dir.join("Loop.java");
    std::fs::write(
        &src,
        "public class Loop { public static void main(String[] a) throws Exception { \
         long s = 0; for (int i = 0; i < 20_000_000; i++) s += i % 7; \
         System.out.println(s); Thread.sleep(300); } }\n",
    )
    .expect("write source");
    let out = trace(
        &["--no-initial-table"],
        &[
            &pmap_tests::program("java", "default-jre-headless").to_string_lossy(),
            src.to_str().expect("utf8 path"),
        ],
    );
    let structures = out
        .split("recognised structures:")
        .nth(1)
        .expect("structures section");
    assert!(structures.contains("JVM code cache"), "{structures}");
    assert!(
        structures.contains("JVM heap/metaspace reservation"),
        "{structures}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_is_one_self_contained_page() {
    let path = std::env::temp_dir().join(format!("pmap-insight-{}.html", std::process::id()));
    let bin = workload_bin("tiny_jit");
    trace(
        &[
            "--stacks",
            "--no-initial-table",
            "--report",
            path.to_str().expect("utf8 path"),
        ],
        &[bin.to_str().expect("utf8 path"), "4", "25"],
    );
    let html = std::fs::read_to_string(&path).expect("report written");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.contains("<svg") && html.contains("<path d=\"M"),
        "no timeline"
    );
    assert!(html.contains("tiny_jit::jit_alloc_rw"), "no call sites");
    assert!(
        html.contains("8 W&rarr;X flips, 4 X&rarr;W flips"),
        "no W^X"
    );
    // Nothing fetched: no external scripts, styles, images or links.
    let stripped = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for needle in ["src=", "href=", "http://", "https://", "@import"] {
        assert!(!stripped.contains(needle), "report refers to {needle}");
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn report_renders_in_headless_chromium_without_errors() {
    let path = std::env::temp_dir().join(format!("pmap-insight-cr-{}.html", std::process::id()));
    let bin = workload_bin("churn");
    trace(
        &[
            "--stacks",
            "--no-initial-table",
            "--report",
            path.to_str().expect("utf8 path"),
        ],
        &[bin.to_str().expect("utf8 path"), "20"],
    );
    let (console, dom) = chromium(&path, &["--dump-dom"]);
    assert!(console.is_empty(), "console messages:\n{console}");
    assert!(dom.contains("<svg") && dom.contains("churn::main"), "{dom}");
    let shot = path.with_extension("png");
    let (console, _) = chromium(
        &path,
        &[
            "--window-size=1100,1200",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    assert!(console.is_empty(), "console messages:\n{console}");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    let _ = std::fs::remove_file(&shot);
    let _ = std::fs::remove_file(&path);
}
