//! Running `pmap [options] CORE...`: each core is read and printed in turn;
//! a core that cannot be read gets a one-line error on stderr and the others
//! are still printed; the exit status is 1 if any failed.

use std::io::Write;
use std::path::Path;

use super::print::{CoreFormat, CoreOptions};

/// Whether `arg` should be read as a core file rather than a PID: it is not a
/// number and names an existing regular file (procps-ng would reject such an
/// argument with its usage text, so no compatible invocation changes).
pub fn is_core_arg(arg: &std::ffi::OsStr) -> bool {
    let b = arg.as_encoded_bytes();
    if b.first().is_some_and(|c| c.is_ascii_digit()) {
        return false;
    }
    std::fs::metadata(arg).is_ok_and(|m| m.is_file())
}

/// Prints each core in `paths` to `out`, errors to `err` (prefixed `pmap: `).
/// Returns whether all were printed.
pub fn print_cores(
    paths: &[&Path],
    opts: &CoreOptions,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<bool> {
    let mut ok = true;
    for path in paths {
        match super::read(path) {
            Ok(core) => {
                if json {
                    crate::format::json::write_core(out, &core, opts)?;
                } else {
                    super::print::write(out, &core, opts)?;
                }
            }
            Err(e) => {
                ok = false;
                out.flush()?;
                writeln!(err, "pmap: {e}")?;
            }
        }
    }
    Ok(ok)
}

/// Stand-alone entry used until the snapshot driver dispatches here: handles
/// `pmap [-x|-d] [-q] [-p] [--json] CORE...` when every operand is a core.
pub fn main_if_cores(args: &[std::ffi::OsString]) -> Option<std::process::ExitCode> {
    let mut opts = CoreOptions::default();
    let mut json = false;
    let mut paths = Vec::new();
    for a in args.iter().skip(1) {
        match a.to_str() {
            Some("-x") => opts.format = CoreFormat::Extended,
            Some("-d") => opts.format = CoreFormat::Device,
            Some("-q") => opts.quiet = true,
            Some("-p") => opts.show_path = true,
            Some("--json") => json = true,
            _ if is_core_arg(a) => paths.push(Path::new(a)),
            _ => return None,
        }
    }
    if paths.is_empty() {
        return None;
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut err = std::io::stderr();
    match print_cores(&paths, &opts, json, &mut out, &mut err)
        .and_then(|ok| out.flush().map(|()| ok))
    {
        Ok(true) => Some(std::process::ExitCode::SUCCESS),
        Ok(false) => Some(std::process::ExitCode::FAILURE),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Some(std::process::ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("pmap: writing output: {e}");
            Some(std::process::ExitCode::FAILURE)
        }
    }
}
