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
use clap_complete::{Generator, Shell};

fn main() -> Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: pmap-docs OUT_DIR")?;
    // The same pages and completions as `pmap man` and `pmap completions`.
    let man = out.join("man");
    fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    for (name, page) in pmap_cli::self_docs::man_pages() {
        let path = man.join(&name);
        let mut text = Vec::new();
        page.render(&mut text)
            .with_context(|| format!("rendering {name}"))?;
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }

    let completions = out.join("completions");
    fs::create_dir_all(&completions)
        .with_context(|| format!("creating {}", completions.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = completions.join(shell.file_name("pmap"));
        let mut text = Vec::new();
        pmap_cli::self_docs::completions(shell, &mut text);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
