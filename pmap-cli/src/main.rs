use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "trace") {
        return pmap_cli::trace::main(args);
    }
    if args.get(1).is_some_and(|a| a == "exporter") {
        return pmap_cli::exporter::main(args);
    }
    if args.get(1).is_some_and(|a| a == "replay") {
        return pmap_cli::replay::main(args);
    }
    if args.get(1).is_some_and(|a| a == "diff") {
        return pmap_cli::diff::main(args);
    }
    // `pmap man [PAGE]`, `pmap completions SHELL`.
    if pmap_cli::self_docs::wanted(&args) {
        return pmap_cli::self_docs::main(&args);
    }
    // --json, --summary, --sort, --names, -S -r -a -F -L -s and core files;
    // anything else is procps-ng's command line.
    if let Some(code) = pmap_cli::views::main_if_views(&args) {
        return code;
    }
    pmap_cli::snapshot::main(args)
}
