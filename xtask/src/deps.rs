//! `cargo xtask deps`: installs what building and testing need, skipping
//! what is present. Debian packages need root; the Rust tools are installed
//! for the current user (rustup, `cargo install`).

use anyhow::{Result, bail};

use crate::util::{self, cargo, cmd, run, succeeds};

/// What to make sure of.
#[derive(Clone, Copy, Debug)]
pub struct Needs {
    /// cargo-fuzz (fuzz targets and the test smoke).
    pub fuzz: bool,
    /// rustfmt and clippy on both toolchains (lints in `cargo xtask test`).
    pub lints: bool,
    /// What `cargo xtask bench` measures against: GNU time (peak RSS),
    /// bpftrace and strace (the alternatives to `pmap trace`).
    pub bench: bool,
    /// The programs the end-to-end tests run as targets and references.
    pub tests: bool,
}

impl Needs {
    pub const ALL: Needs = Needs {
        fuzz: true,
        lints: true,
        bench: true,
        tests: true,
    };
    pub const BUILD: Needs = Needs {
        fuzz: false,
        lints: false,
        bench: false,
        tests: false,
    };
}

/// Debian packages: LLVM 22 for bpf-linker, bpftool for the tests (they
/// check that no programs or links are left in the kernel), glibc's static
/// libraries (`libc.a`) for the static release `pmap` (`release.rs`).
const APT_PACKAGES: &[&str] = &["llvm-22-dev", "libpolly-22-dev", "bpftool", "libc6-dev"];

/// Debian packages the benchmarks run (see `Needs::bench`).
const APT_BENCH_PACKAGES: &[&str] = &["time", "bpftrace", "strace"];

/// Debian packages the end-to-end tests use (see `Needs::tests`): procps-ng's
/// `pmap` is the byte-for-byte reference; gdb's `gcore` writes core files;
/// python3, node and java are real targets (allocators, JITs); chromium
/// renders the HTML report; setcap/setpriv run the tracer unprivileged;
/// unshare (util-linux) and mount hide the kernel's BTF from one tracer,
/// and mount mounts tracefs; zlib1g is the library the `-l` test dlopens
/// by its soname; man-db renders the page `pmap man` prints; prometheus is
/// the real server that scrapes `pmap exporter`; libc6-dbg is libc's
/// separate debug file, which names libc's internal functions in
/// `--stacks` (`sysmalloc`, `_int_malloc`), and gcc builds the C program
/// the stack tests trace.
const APT_TEST_PACKAGES: &[&str] = &[
    "libc6-dbg",
    "gcc",
    "procps",
    "gdb",
    "python3",
    "nodejs",
    "default-jre-headless",
    "chromium",
    "libcap2-bin",
    "util-linux",
    "mount",
    "zlib1g",
    "man-db",
    "prometheus",
];

/// bpf-linker's last release verified to build against Debian's LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_DIR: &str = "/usr/lib/llvm-22";

pub fn main(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("`cargo xtask deps` takes no arguments (got {a:?})");
    }
    ensure(Needs::ALL)
}

/// Installs whatever of `needs` is missing, saying what it does.
pub fn ensure(needs: Needs) -> Result<()> {
    let wanted: Vec<&str> = APT_PACKAGES
        .iter()
        .chain(if needs.bench { APT_BENCH_PACKAGES } else { &[] })
        .chain(if needs.tests { APT_TEST_PACKAGES } else { &[] })
        .copied()
        .collect();
    let missing_apt: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|p| !apt_installed(p))
        .collect();
    for p in wanted.iter().filter(|p| !missing_apt.contains(p)) {
        say_present(&format!("Debian package {p}"));
    }
    if !missing_apt.is_empty() {
        if !util::is_root() {
            bail!(
                "missing Debian packages: {list}. Installing them needs root: run\n    \
                 sudo apt-get update && sudo apt-get install -y {list}\n\
                 then run this command again as yourself (the Rust tools are installed per user)",
                list = missing_apt.join(" ")
            );
        }
        eprintln!(
            "xtask: installing Debian packages: {}",
            missing_apt.join(" ")
        );
        let apt = |args: &[&str]| {
            let mut c = cmd("apt-get");
            c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
            c
        };
        run(&mut apt(&["update"]))?;
        let mut install = apt(&["install", "-y"]);
        install.args(&missing_apt);
        run(&mut install)?;
    }

    ensure_toolchains(needs)?;
    ensure_bpf_linker()?;
    if needs.fuzz {
        ensure_cargo_tool(
            "cargo-fuzz",
            &["fuzz", "--version"],
            &["cargo-fuzz", "--locked"],
        )?;
    }
    Ok(())
}

fn say_present(what: &str) {
    eprintln!("xtask: {what}: present, skipping");
}

fn apt_installed(package: &str) -> bool {
    let mut c = cmd("dpkg-query");
    c.args(["-W", "-f=${Status}", package]);
    util::output(&mut c).is_some_and(|s| s.trim() == "install ok installed")
}

/// The nightly toolchain (kernel programs, fuzzing) with rust-src
/// (`-Z build-std=core`), and the lint components.
fn ensure_toolchains(needs: Needs) -> Result<()> {
    let Some(toolchains) = util::output(cmd("rustup").args(["toolchain", "list"])) else {
        bail!(
            "`rustup toolchain list` failed: this project needs Rust installed with rustup \
             (stable and nightly toolchains) for the user running this command"
        );
    };
    if toolchains.lines().any(|l| l.starts_with("nightly-")) {
        say_present("Rust toolchain nightly");
    } else {
        eprintln!("xtask: installing the Rust nightly toolchain");
        run(cmd("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))
            .map_err(|e| {
                e.context(
                    "the nightly toolchain is needed to build the eBPF programs; \
                     install it with `rustup toolchain install nightly`",
                )
            })?;
    }
    // None: the toolchain plain `cargo` uses here.
    let mut wanted = vec![(Some("nightly"), "rust-src")];
    if needs.lints {
        wanted.extend([
            (Some("nightly"), "clippy"),
            (None, "clippy"),
            (None, "rustfmt"),
        ]);
    }
    for (toolchain, component) in wanted {
        let on = |c: &mut std::process::Command| {
            if let Some(t) = toolchain {
                c.args(["--toolchain", t]);
            }
        };
        let mut list = cmd("rustup");
        list.args(["component", "list", "--installed"]);
        on(&mut list);
        let installed = util::output(&mut list).unwrap_or_default();
        let toolchain = toolchain.unwrap_or("default");
        // Listed as e.g. `rust-src` or `clippy-x86_64-unknown-linux-gnu`.
        if installed
            .lines()
            .any(|l| l == component || l.starts_with(&format!("{component}-")))
        {
            say_present(&format!("{component} for the {toolchain} toolchain"));
            continue;
        }
        eprintln!("xtask: installing {component} for the {toolchain} toolchain");
        let mut add = cmd("rustup");
        add.args(["component", "add", component]);
        if toolchain != "default" {
            add.args(["--toolchain", toolchain]);
        }
        run(&mut add)?;
    }
    Ok(())
}

/// bpf-linker links the kernel programs; it must be built against LLVM 22
/// (its default LLVM is newer than Debian ships, and without LLVM_PREFIX its
/// build finds Debian's LLVM 14 and fails).
fn ensure_bpf_linker() -> Result<()> {
    if succeeds(cmd("bpf-linker").arg("--version")) {
        say_present("bpf-linker");
        return Ok(());
    }
    eprintln!(
        "xtask: installing bpf-linker {BPF_LINKER_VERSION}, built against LLVM 22 (about a minute)"
    );
    let path = {
        let mut dirs = vec![std::path::PathBuf::from(format!("{LLVM_DIR}/bin"))];
        dirs.extend(std::env::split_paths(&util::path_with_cargo_bin()));
        std::env::join_paths(dirs)?
    };
    let mut c = cargo([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--no-default-features",
        "--features",
        "llvm-22",
    ]);
    c.env("PATH", path).env("LLVM_PREFIX", LLVM_DIR);
    run(&mut c)?;
    if !succeeds(cmd("bpf-linker").arg("--version")) {
        bail!(
            "bpf-linker was installed into {} but `bpf-linker --version` fails; \
             check that {LLVM_DIR} exists (Debian package llvm-22-dev)",
            util::cargo_bin_dir().display()
        );
    }
    Ok(())
}

/// A tool from crates.io, installed with `cargo install` unless `check`
/// (a cargo subcommand line) already works.
fn ensure_cargo_tool(name: &str, check: &[&str], install: &[&str]) -> Result<()> {
    if succeeds(&mut cargo(check)) {
        say_present(name);
        return Ok(());
    }
    eprintln!("xtask: installing {name} (a few minutes)");
    let mut c = cargo(["install"]);
    c.args(install);
    run(&mut c)
}
