use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "trace") {
        return pmap_cli::trace::main(args);
    }
    pmap_cli::snapshot::main(args)
}
