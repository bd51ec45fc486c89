//! Writes pmap's man pages and shell completions, generated from the same
//! clap description as `--help`, into a directory (`cargo xtask install`
//! runs this):
//!
//! ```text
//! OUT/man/pmap.1, OUT/man/pmap-<subcommand>.1
//! OUT/completions/pmap.bash, _pmap, pmap.fish
//! ```

use std::{fs, path::PathBuf};

use anyhow::{Context, Result};
use clap_complete::Shell;

fn main() -> Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: pmap-docs OUT_DIR")?;
    let cmd = pmap_cli::cli::command();

    let man = out.join("man");
    fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    clap_mangen::generate_to(cmd.clone(), &man)
        .with_context(|| format!("writing man pages into {}", man.display()))?;

    let completions = out.join("completions");
    fs::create_dir_all(&completions)
        .with_context(|| format!("creating {}", completions.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = cmd.clone();
        clap_complete::generate_to(shell, &mut cmd, "pmap", &completions)
            .with_context(|| format!("writing {shell} completions"))?;
    }
    Ok(())
}
