//! `cargo xtask ...`: the project's build, run, test, install, fuzz and
//! bench helpers. Each subcommand is a module; `cargo xtask help` lists them.

mod bench;
mod deps;
mod fuzz;
mod install;
mod release;
mod run;
mod test;
mod util;

const HELP: &str = "usage: cargo xtask <command> [args]
  deps                 install what is missing (Debian packages need root)
  test [ARGS]          everything CI checks: deps, fmt, clippy, build, fuzz smoke, tests (root)
  run [-- PMAP ARGS]   build the release pmap and run it (no args: the trace demo)
  install [--root DIR] install pmap, its man pages and shell completions
  fuzz [TARGET] [SECS] run the fuzz targets (no args: a 20 s smoke of each)
  bench ...            benchmarks
Each command takes --help.";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let result = match args.first().map(String::as_str) {
        Some("deps") => deps::main(rest),
        Some("test") => test::main(rest),
        Some("run") => run::main(rest),
        Some("install") => install::main(rest),
        Some("fuzz") => fuzz::main(rest),
        Some("bench") => bench::main(rest),
        None | Some("help" | "-h" | "--help") => {
            println!("{HELP}");
            return std::process::ExitCode::SUCCESS;
        }
        Some(other) => Err(anyhow::anyhow!("unknown xtask command {other:?}\n{HELP}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
