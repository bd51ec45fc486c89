//! `pmap trace --stacks` reaches the program's own code (issue 16), on real
//! processes and the real kernel: a C program built without frame
//! pointers, python3 and node (Debian's libc, python and node have none).
//! The call site counted is the first frame outside libc and the
//! allocator; libc's internal functions are named from `libc6-dbg`'s
//! debug file, and as `libc.so.6+0x...` without it.
//!
//! The tracer attaches to a running target that waits for a byte on its
//! stdin before it allocates, so that every library is in the tracer's
//! map when the calls come.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use pmap_tests::pmap_bin;
use serde_json::Value;

/// Starts `command` with its stdin piped: it waits for a byte there.
fn start_waiting(command: &[&str]) -> Child {
    Command::new(command[0])
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"))
}

/// Attaches `pmap trace --stacks --json OPTS` to the waiting `target`,
/// lets it go once the trace runs, and returns the trace's JSON records
/// when the target has exited.
fn trace_attached(mut target: Child, opts: &[&str]) -> Vec<Value> {
    let pid = target.id().to_string();
    let mut tracer = Command::new(pmap_bin())
        .args(["trace", "--stacks", "--json", "--no-initial-table"])
        .args(opts)
        .arg(&pid)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pmap trace");
    let mut err = BufReader::new(tracer.stderr.take().expect("stderr"));
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !line.contains("tracing pid") {
        line.clear();
        let n = err.read_line(&mut line).expect("read the tracer's stderr");
        assert!(n > 0, "pmap trace ended before tracing");
        assert!(Instant::now() < deadline, "pmap trace did not start");
    }
    let mut stdin = target.stdin.take().expect("the target's stdin");
    stdin.write_all(b"x").expect("let the target go");
    drop(stdin);
    assert!(target.wait().expect("wait for the target").success());
    let out = tracer.wait_with_output().expect("wait for pmap trace");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "pmap trace failed:\n{stdout}");
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn deltas(records: &[Value]) -> Vec<&Value> {
    records.iter().filter(|r| r["type"] == "delta").collect()
}

/// The insight's top call sites by bytes, from the summary record.
fn top_sites(records: &[Value]) -> Vec<String> {
    let summary = records
        .iter()
        .find(|r| r["type"] == "summary")
        .expect("a summary record");
    summary["insight"]["alloc"]["top_sites_by_bytes"]
        .as_array()
        .expect("top call sites")
        .iter()
        .map(|s| s["site"].as_str().unwrap_or("").to_string())
        .collect()
}

fn site(d: &Value) -> &str {
    d["call_site"].as_str().unwrap_or("")
}

fn frames(d: &Value) -> Vec<&str> {
    d["frames"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default()
}

const C_PROGRAM: &str = r#"
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>

/* noinline and a use of the result: the compiler must keep both
   functions and their calls (no inlining, no tail call). */
__attribute__((noinline)) char *app_make_cache(size_t n) {
    char *p = malloc(n);
    if (p) memset(p, 1, 4096);
    __asm__ volatile("" ::: "memory");
    return p;
}

__attribute__((noinline)) char *app_grow_heap(size_t n) {
    char *p = malloc(n);
    if (p) p[0] = 2;
    __asm__ volatile("" ::: "memory");
    return p;
}

int main(void) {
    char go;
    if (read(0, &go, 1) < 0) return 1;
    /* 1 MiB: above the mmap threshold, malloc maps it. */
    char *cache = app_make_cache(1 << 20);
    /* 64 KiB blocks: below it, malloc grows the heap with brk. */
    char *keep[40];
    for (int i = 0; i < 40; i++) keep[i] = app_grow_heap(64 << 10);
    unsigned sum = cache[5];
    for (int i = 0; i < 40; i++) sum += keep[i][0];
    printf("%u\n", sum);
    return 0;
}
"#;

/// The C program, built without frame pointers.
fn c_program() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trace_stacks");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let src = dir.join("app.c");
    std::fs::write(&src, C_PROGRAM).expect("write app.c");
    let bin = dir.join("app");
    let gcc = pmap_tests::tool("gcc", "gcc");
    let st = Command::new(gcc)
        .args(["-O2", "-fomit-frame-pointer", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("run gcc");
    assert!(st.success(), "gcc failed");
    bin
}

#[test]
fn a_c_program_without_frame_pointers_has_its_own_functions_as_call_sites() {
    let bin = c_program();
    let records = trace_attached(start_waiting(&[bin.to_str().expect("utf8")]), &[]);
    let ds = deltas(&records);
    let cache = ds
        .iter()
        .find(|d| d["syscall"] == "mmap" && d["args"][1].as_u64() >= Some(1 << 20))
        .expect("the 1 MiB mmap");
    assert!(
        site(cache).starts_with("app_make_cache+"),
        "{cache}\nframes: {:?}",
        frames(cache)
    );
    let brks: Vec<&&Value> = ds.iter().filter(|d| d["syscall"] == "brk").collect();
    assert!(brks.len() >= 10, "{} brk deltas", brks.len());
    // The first brk may come from the first malloc (app_make_cache's,
    // which sets the heap up); every later one grows it for app_grow_heap.
    for d in &brks[1..] {
        assert!(
            site(d).starts_with("app_grow_heap+"),
            "{d}\nframes: {:?}",
            frames(d)
        );
    }
    // The wrapper and libc's internals are named with libc6-dbg's file.
    let inner = frames(brks[1]);
    assert!(
        inner.iter().any(|f| f.starts_with("sysmalloc+")),
        "libc's internals unnamed (install libc6-dbg: `cargo xtask deps`): {inner:?}"
    );
    let top = top_sites(&records);
    assert!(
        top.iter().take(2).any(|s| s.starts_with("app_grow_heap+"))
            && top.iter().take(2).any(|s| s.starts_with("app_make_cache+")),
        "{top:?}"
    );
}

#[test]
fn without_the_debug_file_libc_internals_are_module_and_offset() {
    let bin = c_program();
    let empty = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trace_stacks_no_debug");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let records = trace_attached(
        start_waiting(&[bin.to_str().expect("utf8")]),
        &[
            "--stack-depth",
            "8",
            "--debug-dir",
            empty.to_str().expect("utf8"),
        ],
    );
    let ds = deltas(&records);
    let brk = ds
        .iter()
        .filter(|d| d["syscall"] == "brk")
        .nth(1)
        .expect("brk deltas");
    let fs = frames(brk);
    assert!(!fs.iter().any(|f| f.contains("sysmalloc")), "{fs:?}");
    assert!(fs.iter().any(|f| f.starts_with("libc.so.6+0x")), "{fs:?}");
    // Unwinding does not need the names: the call site is still found.
    assert!(site(brk).starts_with("app_grow_heap+"), "{brk}");
}

/// Deltas with a call site, and those of them counted inside libc.
fn libc_share(records: &[Value]) -> (usize, usize) {
    let sites: Vec<&str> = deltas(records)
        .into_iter()
        .map(site)
        .filter(|s| !s.is_empty())
        .collect();
    let libc = sites.iter().filter(|s| s.contains("libc.so")).count();
    (libc, sites.len())
}

#[test]
fn python_call_sites_are_outside_libc() {
    let python = pmap_tests::program("python3", "python3");
    let script = "import sys, mmap\n\
                  sys.stdin.read(1)\n\
                  keep = []\n\
                  for i in range(200):\n    keep.append([0] * (50000 + i))\n    keep.append(bytearray(300000 + i))\n\
                  m = [mmap.mmap(-1, 1 << 20) for _ in range(20)]\n";
    let target = start_waiting(&[python.to_str().expect("utf8"), "-c", script]);
    let records = trace_attached(target, &[]);
    let (libc, all) = libc_share(&records);
    assert!(all >= 400, "{all} calls with a call site");
    assert!(libc * 10 < all, "{libc} of {all} call sites in libc");
}

#[test]
fn node_call_sites_are_outside_libc() {
    let node = pmap_tests::program("node", "nodejs");
    let script = "process.stdin.once('data', () => { const keep = []; \
                  for (let i = 0; i < 200; i++) { keep.push(Buffer.alloc((1 << 20) + i)); \
                  keep.push(new Array(100000 + i).fill(i)); } process.exit(0); });";
    let target = start_waiting(&[node.to_str().expect("utf8"), "-e", script]);
    let records = trace_attached(target, &[]);
    let (libc, all) = libc_share(&records);
    assert!(all >= 200, "{all} calls with a call site");
    assert!(libc * 10 < all, "{libc} of {all} call sites in libc");
}
