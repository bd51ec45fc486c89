//! `cargo xtask bench trace` (being written).
use anyhow::Result;

use super::Opts;

pub fn run(_opts: &Opts) -> Result<String> {
    anyhow::bail!("not yet")
}
