//! `cargo xtask test [--no-lint] [--no-fuzz] [CARGO TEST ARGS...]`: the
//! project's whole check, as CI runs it: dependencies, formatting, clippy
//! (userspace and kernel programs), the build, a fuzz smoke, then every test.
//! Its output ends with cargo test's own summary.

use anyhow::{Result, bail};

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

/// The clippy flags for the kernel programs: they are built with nightly for
/// the BPF target, like aya-build does, so clippy must see them that way.
pub const EBPF_TARGET: &str = "bpfel-unknown-none";

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
    crate::util::note_no_ebpf_ignored();
    deps::ensure(deps::Needs {
        fuzz: fuzz_smoke,
        lints: lint,
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
    run(cargo(test_args(&rest)).env_remove("PMAP_NO_EBPF"))
}

fn step(what: &str) {
    eprintln!("xtask: ==== {what} ====");
}

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

/// `cargo test ARGS -- --test-threads=1` unless the caller chose a thread
/// count: the privileged tests load programs and mount tracefs, kernel state
/// that tests running side by side would share.
fn test_args(rest: &[String]) -> Vec<String> {
    let mut args = vec!["test".to_string()];
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
    use super::test_args;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_thread_is_added_after_the_separator() {
        assert_eq!(test_args(&[]), s(&["test", "--", "--test-threads=1"]));
        assert_eq!(
            test_args(&s(&["-p", "pmap-cli", "ebpf"])),
            s(&["test", "-p", "pmap-cli", "ebpf", "--", "--test-threads=1"])
        );
        assert_eq!(
            test_args(&s(&["--", "--nocapture"])),
            s(&["test", "--", "--nocapture", "--test-threads=1"])
        );
    }

    #[test]
    fn a_chosen_thread_count_is_kept() {
        assert_eq!(
            test_args(&s(&["--", "--test-threads=4"])),
            s(&["test", "--", "--test-threads=4"])
        );
    }
}
