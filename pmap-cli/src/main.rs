use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "trace") {
        return pmap_cli::trace::main(args);
    }
    // --json, --summary, --sort, --names, -S -r -a -F -L -s and core files;
    // anything else is procps-ng's command line.
    if let Some(code) = pmap_cli::cmd::views::main_if_views(&args) {
        return code;
    }
    pmap_cli::cmd::snapshot::main(args)
}
