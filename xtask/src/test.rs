//! `cargo xtask test [--no-lint] [--no-fuzz] [CARGO TEST ARGS...]`: the
//! project's whole check, as CI runs it: dependencies, formatting, clippy
//! (userspace and kernel programs), the build, a fuzz smoke, then every test.
//! Its output ends with cargo test's own summaries and then their totals,
//! `xtask: N passed, N failed, N skipped`.

use std::{
    io::{BufRead, BufReader, Write},
    process::Command,
    sync::OnceLock,
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::{
    deps, fuzz,
    util::{cargo, run},
};

const USAGE: &str = "usage: cargo xtask test [--no-lint] [--no-fuzz] [CARGO TEST ARGS...]
  Runs, as root: deps, cargo fmt --check, clippy -D warnings (userspace and
  eBPF), the build, a short smoke of every fuzz target, then cargo test with
  --test-threads=1 (the eBPF tests share kernel state).
  --no-lint   skip fmt and clippy
  --no-fuzz   skip the fuzz smoke
  Anything else goes to cargo test, e.g. `cargo xtask test --no-fuzz -p pmap-cli ebpf`.";

/// The target aya-build compiles the kernel programs for (with nightly and
/// `-Z build-std=core`); clippy must check them the same way.
const EBPF_TARGET: &str = "bpfel-unknown-none";

pub fn main(args: &[String]) -> Result<()> {
    let mut lint = true;
    let mut fuzz_smoke = true;
    let mut rest = Vec::new();
    for a in args {
        match a.as_str() {
            "--no-lint" => lint = false,
            "--no-fuzz" => fuzz_smoke = false,
            "-h" | "--help" if rest.is_empty() => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => rest.push(a.clone()),
        }
    }
    if !crate::util::is_root() {
        bail!(
            "`cargo xtask test` must run as root: its end-to-end tests load eBPF programs \
             into the kernel and attach them to tracepoints (CAP_BPF, CAP_PERFMON, and \
             CAP_SYS_ADMIN to mount tracefs), and it installs missing Debian packages. \
             Run it as root, e.g. `sudo env \"PATH=$PATH\" cargo xtask test`"
        );
    }
    step("dependencies");
    crate::util::note_no_ebpf_ignored();
    deps::ensure(deps::Needs {
        fuzz: fuzz_smoke,
        lints: lint,
        bench: false,
        tests: true,
    })?;

    if lint {
        step("formatting");
        run(cargo(["fmt", "--all", "--check"]).env_remove("PMAP_NO_EBPF"))?;
        run(&mut cargo([
            "fmt",
            "--all",
            "--check",
            "--manifest-path",
            "fuzz/Cargo.toml",
        ]))?;
        step("clippy, userspace crates");
        run(cargo(["clippy", "--all-targets", "--", "-D", "warnings"]).env_remove("PMAP_NO_EBPF"))?;
        step("clippy, eBPF crate (nightly, BPF target)");
        run(&mut ebpf_clippy())?;
    }

    step("build");
    run(cargo(["build", "--bins", "--tests", "--examples"]).env_remove("PMAP_NO_EBPF"))?;

    if fuzz_smoke {
        step("fuzz smoke");
        fuzz::smoke_all()?;
    }

    step("tests");
    let mut tests = cargo(test_args(&rest));
    tests.env_remove("PMAP_NO_EBPF");
    run_tests(tests)
}

/// The variable `pmap_tests::skip` reads (tests/src/lib.rs): the file where
/// a test records a check this machine cannot run, one line each.
const SKIP_FILE_VAR: &str = "PMAP_TEST_SKIPS";

/// Runs cargo test, passing its output through, then prints the totals of
/// all its `test result:` lines: cargo's own last summary is that of the
/// last test binary (often a doc-test run with no tests), not of the run.
/// Checks the tests skipped (see `SKIP_FILE_VAR`) are listed with their
/// reasons and counted with the ignored tests.
fn run_tests(mut c: Command) -> Result<()> {
    let skip_file = std::env::temp_dir().join(format!("pmap-test-skips-{}", std::process::id()));
    // A file left by an earlier run with this pid would be counted again.
    let _ = std::fs::remove_file(&skip_file);
    c.env(SKIP_FILE_VAR, &skip_file);
    let shown = crate::util::show(&c);
    eprintln!("xtask: $ {shown}");
    // One pipe for both streams keeps cargo's "Running ..." lines (stderr)
    // in order with the test output (stdout).
    let (reader, writer) = std::io::pipe().context("creating a pipe for cargo test")?;
    let mut child = c
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    // The Command holds copies of the write end: they must close, or
    // reading never ends.
    drop(c);
    let mut totals = Totals::default();
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(reader).lines() {
        let line = line.context("reading cargo test's output")?;
        totals.add(&line);
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    let status = child.wait()?;
    let skips = read_skips(&skip_file)?;
    let _ = std::fs::remove_file(&skip_file);
    for line in &skips {
        println!("xtask: {line}");
    }
    totals.skipped_checks = skips.len() as u64;
    println!(
        "xtask: {} passed, {} failed, {} skipped",
        totals.passed,
        totals.failed,
        totals.skipped()
    );
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// The `pmap-test-skip:` lines the tests wrote (none if no test wrote the
/// file).
fn read_skips(path: &std::path::Path) -> Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.lines().map(str::to_string).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).context(format!("reading {}", path.display())),
    }
}

/// Sums of libtest's `test result: ok. 3 passed; 0 failed; 1 ignored; ...`.
#[derive(Debug, Default, PartialEq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
    /// Checks inside passing tests that this machine could not run
    /// (`pmap-test-skip:` lines).
    skipped_checks: u64,
}

impl Totals {
    fn skipped(&self) -> u64 {
        self.ignored + self.skipped_checks
    }

    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(['.', ';']) {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// Announces a step with the time since xtask started (CI has a limit).
fn step(what: &str) {
    let secs = START.get_or_init(Instant::now).elapsed().as_secs();
    eprintln!("xtask: ==== {what} ==== (+{}:{:02})", secs / 60, secs % 60);
}

static START: OnceLock<Instant> = OnceLock::new();

/// Clippy for pmap-ebpf as it is really built.
fn ebpf_clippy() -> std::process::Command {
    let mut c = cargo([
        "+nightly",
        "clippy",
        "--package",
        "pmap-ebpf",
        "--all-targets",
        "--target",
        EBPF_TARGET,
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
        // Map helpers take keys and values by reference; passing them by
        // value, as this lint asks, copies them onto the 512-byte BPF stack.
        "-A",
        "clippy::needless_borrows_for_generic_args",
    ]);
    c.env_remove("PMAP_NO_EBPF");
    c
}

/// `cargo test --no-fail-fast ARGS -- --test-threads=1` unless the caller chose a thread
/// count: the privileged tests load programs and mount tracefs, kernel state
/// that tests running side by side would share.
fn test_args(rest: &[String]) -> Vec<String> {
    // Every test binary runs even after one fails: a CI log then shows
    // every failure, not the first.
    let mut args = vec!["test".to_string(), "--no-fail-fast".to_string()];
    args.extend(rest.iter().cloned());
    if !rest.iter().any(|a| a.starts_with("--test-threads")) {
        if !rest.iter().any(|a| a == "--") {
            args.push("--".into());
        }
        args.push("--test-threads=1".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::{Totals, read_skips, test_args};

    #[test]
    fn skipped_checks_are_read_one_per_line() {
        let path = std::env::temp_dir().join(format!("xtask-skips-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        assert_eq!(read_skips(&path).expect("no file"), Vec::<String>::new());
        std::fs::write(
            &path,
            "pmap-test-skip: views::numa: -L: no NUMA\npmap-test-skip: views::numa: THP: none\n",
        )
        .expect("write");
        let skips = read_skips(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        assert_eq!(skips.len(), 2);
        assert_eq!(skips[1], "pmap-test-skip: views::numa: THP: none");
    }

    #[test]
    fn totals_sum_every_result_line() {
        let mut t = Totals::default();
        for line in [
            "test result: ok. 15 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            "running 3 tests",
            "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 4 filtered out; finished in 5.12s",
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
        ] {
            t.add(line);
        }
        assert_eq!(
            t,
            Totals {
                passed: 16,
                failed: 2,
                ignored: 2,
                skipped_checks: 0,
            }
        );
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_thread_is_added_after_the_separator() {
        assert_eq!(
            test_args(&[]),
            s(&["test", "--no-fail-fast", "--", "--test-threads=1"])
        );
        assert_eq!(
            test_args(&s(&["-p", "pmap-cli", "ebpf"])),
            s(&[
                "test",
                "--no-fail-fast",
                "-p",
                "pmap-cli",
                "ebpf",
                "--",
                "--test-threads=1"
            ])
        );
        assert_eq!(
            test_args(&s(&["--", "--nocapture"])),
            s(&[
                "test",
                "--no-fail-fast",
                "--",
                "--nocapture",
                "--test-threads=1"
            ])
        );
    }

    #[test]
    fn a_chosen_thread_count_is_kept() {
        assert_eq!(
            test_args(&s(&["--", "--test-threads=4"])),
            s(&["test", "--no-fail-fast", "--", "--test-threads=4"])
        );
    }
}
