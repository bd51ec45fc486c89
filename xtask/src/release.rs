//! The release `pmap` that users run, built in this one place for
//! `cargo xtask run`, `cargo xtask install` and `cargo xtask bench`: a
//! statically linked glibc binary (static-pie) for the host's target triple,
//! at `<target dir>/<host triple>/release/pmap`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::util::{self, run};

/// The flag that links the C runtime (glibc) statically.
const CRT_STATIC: &str = "-Ctarget-feature=+crt-static";

/// Builds the release `pmap` (statically linked: glibc, static-pie) and
/// returns its path. `with_ebpf` removes PMAP_NO_EBPF so that the eBPF
/// programs are embedded; without it the caller's PMAP_NO_EBPF applies.
///
/// Static because a dynamic `pmap` spends about 0.28 ms per run in ld.so's
/// symbol lookups and libgcc_s's `__cpu_indicator_init` (CPUID, which traps
/// in a VM): `pmap PID` of a small process took 1.53 ms dynamic, 1.25 ms
/// static, against 0.97 ms for `cat /proc/PID/maps`.
pub fn build_pmap(with_ebpf: bool) -> Result<PathBuf> {
    let mut c = cargo([
        "build",
        "--release",
        "--package",
        "pmap-cli",
        "--bin",
        "pmap",
    ])?;
    if with_ebpf {
        c.env_remove("PMAP_NO_EBPF");
    }
    run(&mut c)?;
    let pmap = pmap_path()?;
    if !pmap.is_file() {
        bail!(
            "the build succeeded but {} does not exist: the target directory is taken from \
             CARGO_TARGET_DIR or CARGO_BUILD_TARGET_DIR only; if a cargo config file sets \
             build.target-dir, set CARGO_TARGET_DIR to the same directory",
            pmap.display()
        );
    }
    Ok(pmap)
}

/// Where [`build_pmap`] leaves `pmap`: `<target dir>/<host triple>/release/pmap`.
pub fn pmap_path() -> Result<PathBuf> {
    Ok(target_dir()
        .join(host_triple()?)
        .join("release")
        .join("pmap"))
}

/// `cargo ARGS --target <host triple>`, with `+crt-static` for that target
/// only. `--target` is needed: without it the flag would also reach the
/// proc-macro crates, which cannot be linked statically.
pub fn cargo<I, S>(args: I) -> Result<Command>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let triple = host_triple()?;
    let mut c = util::cargo(args);
    c.args(["--target", &triple]);
    let (var, value) = static_rustflags(|k| std::env::var(k).ok(), &triple);
    c.env(var, value);
    Ok(c)
}

/// The variable and value that add [`CRT_STATIC`] to the flags cargo would
/// use for `triple`, keeping the user's. Cargo takes the first of
/// CARGO_ENCODED_RUSTFLAGS, RUSTFLAGS, `target.<triple>.rustflags`,
/// `build.rustflags`; with `--target`, each applies to that target's crates
/// only. The eBPF build that pmap-cli's build script runs sets its own
/// CARGO_ENCODED_RUSTFLAGS, so none of these reach it.
fn static_rustflags(get: impl Fn(&str) -> Option<String>, triple: &str) -> (String, String) {
    let append = |theirs: Option<String>, sep: &str| match theirs {
        Some(t) if !t.trim().is_empty() => format!("{t}{sep}{CRT_STATIC}"),
        _ => CRT_STATIC.to_string(),
    };
    for (var, sep) in [("CARGO_ENCODED_RUSTFLAGS", "\x1f"), ("RUSTFLAGS", " ")] {
        if let Some(theirs) = get(var) {
            return (var.to_string(), append(Some(theirs), sep));
        }
    }
    let var = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        triple.to_uppercase().replace(['-', '.'], "_")
    );
    // The target's flags replace build.rustflags: carry those over.
    let theirs = get(&var).or_else(|| get("CARGO_BUILD_RUSTFLAGS"));
    (var, append(theirs, " "))
}

/// The host's target triple, from `rustc -vV`.
pub fn host_triple() -> Result<String> {
    let out = util::output(util::cmd("rustc").arg("-vV"))
        .context("`rustc -vV` failed; is Rust installed (rustup)?")?;
    out.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_string())
        .context("`rustc -vV` did not say `host: ...`")
}

/// Cargo's target directory: CARGO_TARGET_DIR (or CARGO_BUILD_TARGET_DIR),
/// relative to the workspace root where cargo runs, else `target/` there.
fn target_dir() -> PathBuf {
    let root = util::root();
    ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"]
        .iter()
        .find_map(std::env::var_os)
        .filter(|d| !d.is_empty())
        .map(|d| root.join(Path::new(&d)))
        .unwrap_or_else(|| root.join("target"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(env: &[(&str, &str)]) -> (String, String) {
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        static_rustflags(get, "x86_64-unknown-linux-gnu")
    }

    #[test]
    fn static_flag_goes_to_the_host_target_only_by_default() {
        let var = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS";
        assert_eq!(flags(&[]), (var.into(), CRT_STATIC.into()));
        assert_eq!(
            flags(&[(var, "-Cforce-frame-pointers=yes")]),
            (
                var.into(),
                format!("-Cforce-frame-pointers=yes {CRT_STATIC}")
            )
        );
        assert_eq!(
            flags(&[("CARGO_BUILD_RUSTFLAGS", "-g")]),
            (var.into(), format!("-g {CRT_STATIC}"))
        );
    }

    #[test]
    fn the_users_rustflags_are_kept() {
        assert_eq!(
            flags(&[("RUSTFLAGS", "-g")]),
            ("RUSTFLAGS".into(), format!("-g {CRT_STATIC}"))
        );
        assert_eq!(
            flags(&[("RUSTFLAGS", "-g"), ("CARGO_ENCODED_RUSTFLAGS", "-g\x1f-O")]),
            (
                "CARGO_ENCODED_RUSTFLAGS".into(),
                format!("-g\x1f-O\x1f{CRT_STATIC}")
            )
        );
        assert_eq!(
            flags(&[("CARGO_ENCODED_RUSTFLAGS", "")]),
            ("CARGO_ENCODED_RUSTFLAGS".into(), CRT_STATIC.into())
        );
    }

    #[test]
    fn pmap_is_under_the_host_triple() {
        let triple = host_triple().expect("rustc -vV");
        let p = pmap_path().expect("rustc -vV");
        assert!(
            p.ends_with(Path::new(&triple).join("release/pmap")),
            "{p:?}"
        );
    }
}
