//! `cargo xtask install [--root DIR] [--dry-run]`: the release `pmap`
//! (static, see [`release::build_pmap`]) on PATH, with its man pages and
//! bash, zsh and fish completions under the same prefix. Default prefix:
//! /usr/local as root, ~/.local otherwise. Debian's procps owns
//! /usr/bin/pmap, so /usr is refused.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

use crate::{
    deps, release,
    util::{self, run},
};

const USAGE: &str = "usage: cargo xtask install [--root DIR] [--dry-run]
  Builds the release pmap (static-pie, target/<host triple>/release/pmap) and
  installs, under DIR (default /usr/local as root, ~/.local otherwise):
    DIR/bin/pmap
    DIR/share/man/man1/pmap.1 (and one page per subcommand)
    DIR/share/bash-completion/completions/pmap
    DIR/share/zsh/site-functions/_pmap
    DIR/share/fish/vendor_completions.d/pmap.fish
  --dry-run   print what would be installed where, change nothing";

pub fn main(args: &[String]) -> Result<()> {
    let mut prefix: Option<PathBuf> = None;
    let mut dry_run = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--root" => {
                let dir = it.next().context("--root needs a directory")?;
                prefix = Some(PathBuf::from(dir));
            }
            s if s.starts_with("--root=") => prefix = Some(PathBuf::from(&s["--root=".len()..])),
            "--dry-run" => dry_run = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let prefix = match prefix {
        Some(p) => absolute(&p)?,
        None => default_prefix()?,
    };
    check_prefix(&prefix)?;

    let pmap = release::pmap_path()?;
    let docs = pmap.with_file_name("pmap-docs");
    let files = plan(&prefix, &pmap, &docs)?;
    if dry_run {
        eprintln!(
            "xtask: dry run: would build the release pmap (static-pie) as {}, \
             generate its docs into {}, and install:",
            pmap.display(),
            docs.display()
        );
        for (from, to) in &files {
            eprintln!("  {} -> {}", from.display(), to.display());
        }
        return Ok(());
    }

    deps::ensure(deps::Needs::BUILD)?;
    util::note_no_ebpf_ignored();
    let pmap = release::build_pmap(true)?;
    generate_docs(&docs)?;
    // The man pages are one per (sub)command: list what was generated.
    let files = plan(&prefix, &pmap, &docs)?;
    for (from, to) in &files {
        install_file(from, to)?;
        eprintln!("xtask: installed {}", to.display());
    }
    report_path(&prefix.join("bin"));
    Ok(())
}

fn default_prefix() -> Result<PathBuf> {
    if util::is_root() {
        return Ok(PathBuf::from("/usr/local"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; give --root DIR")?;
    Ok(PathBuf::from(home).join(".local"))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(p))
    }
}

/// Refuses prefixes whose bin/pmap is procps-ng's.
fn check_prefix(prefix: &Path) -> Result<()> {
    let bin = prefix.join("bin/pmap");
    let resolved = |p: &Path| fs::canonicalize(p.parent().unwrap_or(p)).ok();
    let procps = Path::new("/usr/bin/pmap");
    let clash = prefix == Path::new("/usr")
        || prefix == Path::new("/")
        || (procps.exists() && resolved(&bin).is_some() && resolved(&bin) == resolved(procps));
    if clash {
        bail!(
            "{} would replace procps-ng's pmap (owned by Debian's procps package); \
             install under another prefix, e.g. --root /usr/local",
            bin.display()
        );
    }
    Ok(())
}

/// (source, destination) of every file to install.
fn plan(prefix: &Path, binary: &Path, docs: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let share = prefix.join("share");
    let mut files = vec![(binary.to_path_buf(), prefix.join("bin/pmap"))];
    let man = docs.join("man");
    let mut pages: Vec<PathBuf> = match fs::read_dir(&man) {
        Ok(dir) => dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "1"))
            .collect(),
        Err(_) => vec![man.join("pmap.1")],
    };
    pages.sort();
    for page in pages {
        let name = page.file_name().context("man page has no name")?.to_owned();
        files.push((page, share.join("man/man1").join(name)));
    }
    let comp = docs.join("completions");
    files.extend([
        (
            comp.join("pmap.bash"),
            share.join("bash-completion/completions/pmap"),
        ),
        (comp.join("_pmap"), share.join("zsh/site-functions/_pmap")),
        (
            comp.join("pmap.fish"),
            share.join("fish/vendor_completions.d/pmap.fish"),
        ),
    ]);
    Ok(files)
}

/// Man pages and completions from `pmap_cli::cli::command()`, by the
/// pmap-cli example `pmap-docs` (so that xtask need not build pmap-cli),
/// built like `pmap` so that the two share their compiled crates.
fn generate_docs(out: &Path) -> Result<()> {
    if out.exists() {
        fs::remove_dir_all(out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let mut c = release::cargo([
        "run",
        "--quiet",
        "--release",
        "--package",
        "pmap-cli",
        "--example",
        "pmap-docs",
    ])?;
    c.arg("--").arg(out).env_remove("PMAP_NO_EBPF");
    run(&mut c)
}

fn install_file(from: &Path, to: &Path) -> Result<()> {
    let dir = to.parent().context("destination has no directory")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Copy to a temporary name and rename, so that a running pmap is not
    // overwritten in place.
    let tmp = to.with_extension("xtask-new");
    fs::copy(from, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    fs::rename(&tmp, to).with_context(|| format!("renaming into {}", to.display()))?;
    Ok(())
}

/// Says which pmap the shell will now run.
fn report_path(bin: &Path) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let first = std::env::split_paths(&path).find(|d| d.join("pmap").is_file());
    match first {
        Some(d) if d == bin => eprintln!(
            "xtask: `pmap` now runs {}; procps-ng's stays at /usr/bin/pmap",
            bin.join("pmap").display()
        ),
        Some(d) => eprintln!(
            "xtask: note: {} comes before {} in PATH, so `pmap` still runs {}; \
             run {} or put {} first in PATH",
            d.display(),
            bin.display(),
            d.join("pmap").display(),
            bin.join("pmap").display(),
            bin.display()
        ),
        None => eprintln!(
            "xtask: note: {} is not in PATH; add it to run `pmap`",
            bin.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procps_location_is_refused() {
        assert!(check_prefix(Path::new("/usr")).is_err());
        assert!(check_prefix(Path::new("/")).is_err());
        assert!(check_prefix(Path::new("/usr/local")).is_ok());
        assert!(check_prefix(Path::new("/tmp/pmap-prefix")).is_ok());
    }

    #[test]
    fn plan_puts_files_in_the_standard_places() {
        let files = plan(
            Path::new("/p"),
            Path::new("/t/pmap"),
            Path::new("/nonexistent-docs"),
        )
        .expect("plan");
        let dests: Vec<_> = files.iter().map(|(_, to)| to.clone()).collect();
        for want in [
            "/p/bin/pmap",
            "/p/share/man/man1/pmap.1",
            "/p/share/bash-completion/completions/pmap",
            "/p/share/zsh/site-functions/_pmap",
            "/p/share/fish/vendor_completions.d/pmap.fish",
        ] {
            assert!(dests.contains(&PathBuf::from(want)), "{want} in {dests:?}");
        }
    }
}
