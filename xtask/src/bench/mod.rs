//! `cargo xtask bench snapshot|trace`: benchmarks, compared side by side.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("no benchmark named {:?} yet", args.first())
}
