use std::process::ExitCode;

fn main() -> ExitCode {
    pmap_cli::cmd::main(std::env::args_os().collect())
}
