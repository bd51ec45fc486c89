//! Views of a process beyond procps-ng's tables: `--json`, `--summary`,
//! `--sort`, `--names`, Solaris's `-S -r -a -F -L -s -l`, and core files.
//!
//! `cmd::main` hands the command line here first ([`main_if_views`]); only an
//! invocation that uses one of these options or names a core file is taken,
//! so every procps-ng compatible invocation reaches the compatible driver
//! unchanged. Data comes from `source` (read checked, as the procps
//! tables are); the tables the procps formats print come from `render`.

pub mod args;
pub mod core_file;
pub mod help;
pub mod link_names;
pub mod names;
pub mod solaris;
pub mod solaris_json;
pub mod sort;
pub mod summary;

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;

use args::ViewArgs;

use crate::cmd::common::{exit, numbers, rc, table::overlaps_warning};
use crate::map::process::ProcessInfo;
use crate::map::smaps::SmapsEntry;
use crate::render::{self, Format, Options, SmapsColumns};
use crate::source::{
    checked::{self, Tried},
    pid_dir::PidDir,
};

/// What one process looks like to the views: header facts and its regions
/// (with smaps fields when the view needs them, else empty fields).
pub struct Snapshot {
    /// The process's `/proc` directory: every file of it is read through
    /// this, so all describe one process even if its id is reused.
    pub dir: PidDir,
    pub info: ProcessInfo,
    pub entries: Vec<SmapsEntry>,
    /// Rows left out because they overlapped an earlier row in every read
    /// (the map kept changing).
    pub dropped: usize,
}

/// Reads a process for the views; `None` if it does not exist (or exited
/// before its map could be read whole). The map is read checked and again
/// while torn, as the procps tables are (`source::checked`).
pub fn read_snapshot(pid: u32, smaps: bool) -> io::Result<Option<Snapshot>> {
    let Ok(dir) = PidDir::open(pid) else {
        return Ok(None);
    };
    let Some(info) = crate::source::process::fetch_in(&dir) else {
        return Ok(None);
    };
    // A thread's directory shows its process's map.
    let read = match checked::read_entries(&dir, &info, smaps)? {
        Tried::Done(read) => read,
        Tried::Vanished => return Ok(None),
        Tried::Unsettled => {
            return Err(io::Error::other(
                "it replaced its program (execve) during every read of its map",
            ));
        }
    };
    Ok(Some(Snapshot {
        dir,
        info: read.info,
        entries: read.entries,
        dropped: read.dropped,
    }))
}

/// Runs the views when `args` (with the program name) ask for them.
pub fn main_if_views(args: &[OsString]) -> Option<ExitCode> {
    let rest = args.get(1..).unwrap_or(&[]);
    if !args::wants_views(rest) {
        return None;
    }
    let v = match args::parse(rest) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("pmap: {e}");
            return Some(ExitCode::FAILURE);
        }
    };
    if v.help {
        print!("{}", help::TEXT);
        return Some(ExitCode::SUCCESS);
    }
    if v.operands.is_empty() {
        eprintln!("pmap: no process ID or core file given (try `pmap --help`)");
        return Some(ExitCode::FAILURE);
    }
    let mut v = v;
    if let Some(rc) = v.rc.take() {
        let path = match rc {
            Some(p) => p,
            None => match rc::default_path("pmap") {
                Some(p) => p,
                None => {
                    eprintln!(
                        "pmap: HOME is not set, so there is no default rc file (use -C FILE)"
                    );
                    return Some(ExitCode::FAILURE);
                }
            },
        };
        let Some(rc) = rc::read(&path, &mut |w| eprintln!("pmap: {w}")) else {
            eprintln!(
                "pmap: cannot read rc file {} (create one with -n or -N FILE)",
                path.display()
            );
            return Some(ExitCode::FAILURE);
        };
        v.format = Format::Rc(rc.fields);
        v.show_path ^= rc.show_path_toggles % 2 == 1;
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut err = io::stderr();
    let status = match run(&v, &mut out, &mut err).and_then(|s| out.flush().map(|()| s)) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("pmap: writing output: {e}");
            1
        }
    };
    Some(ExitCode::from(status))
}

/// Prints every operand; returns the exit status.
pub fn run(v: &ViewArgs, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let mut status = 0u8;
    let mut columns = SmapsColumns::default();
    for op in &v.operands {
        if args::is_core(op) {
            if !print_core(v, op, out, err)? {
                status |= exit::FAILURE;
            }
            continue;
        }
        let Ok(Some(pid)) = numbers::parse_pid(op.as_encoded_bytes()) else {
            out.flush()?;
            writeln!(
                err,
                "pmap: {}: not a process ID nor a core file",
                op.to_string_lossy()
            )?;
            status |= exit::FAILURE;
            continue;
        };
        match print_process(v, pid, &mut columns, out, err) {
            Ok(true) => {}
            Ok(false) => {
                out.flush()?;
                writeln!(err, "pmap: process {pid} does not exist")?;
                status |= exit::MISSING;
            }
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Err(e),
            Err(e) => {
                out.flush()?;
                // A bare EACCES/EPERM from /proc: say what it takes.
                let hint = if e.kind() == io::ErrorKind::PermissionDenied
                    && e.raw_os_error().is_some()
                {
                    " (reading a process's map takes the access a debugger has to it: run pmap as its owner, or as root with CAP_SYS_PTRACE)"
                } else {
                    ""
                };
                writeln!(err, "pmap: process {pid}: {e}{hint}")?;
                status |= exit::FAILURE;
            }
        }
    }
    Ok(status)
}

fn print_core(
    v: &ViewArgs,
    op: &OsString,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<bool> {
    use crate::render::core_file::{CoreFormat, CoreOptions};
    let path = std::path::Path::new(op);
    let format = match v.format {
        Format::Default => CoreFormat::Default,
        Format::Extended => CoreFormat::Extended,
        Format::Device => CoreFormat::Device,
        _ => {
            out.flush()?;
            writeln!(
                err,
                "pmap: {}: -X and -XX need /proc/PID/smaps, which a core file does not have (use -x or -d)",
                path.display()
            )?;
            return Ok(false);
        }
    };
    if v.summary || v.sort.is_some() || v.needs_live() {
        out.flush()?;
        writeln!(
            err,
            "pmap: {}: --summary, --sort, -S, -r, -a, -L and -s need a live process (a core file records no RSS, swap, NUMA or page sizes)",
            path.display()
        )?;
        return Ok(false);
    }
    let opts = CoreOptions {
        format,
        quiet: v.quiet,
        show_path: v.show_path,
        names: v.names,
        link_names: v.link_names,
    };
    core_file::print_cores(&[path], &opts, v.json, out, err)
}

/// Prints one process; `Ok(false)` if it does not exist.
fn print_process(
    v: &ViewArgs,
    pid: u32,
    columns: &mut SmapsColumns,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<bool> {
    let smaps = v.format.uses_smaps()
        || v.summary
        || v.solaris_table()
        || v.sort.is_some_and(args::SortKey::needs_smaps);
    let Some(mut snap) = read_snapshot(pid, smaps)? else {
        return Ok(false);
    };
    if snap.dropped > 0 {
        out.flush()?;
        writeln!(err, "pmap: {}", overlaps_warning(pid, snap.dropped))?;
    }
    snap.entries.retain(|e| v.range.contains(&e.region));
    let roles = if v.names || v.summary {
        names::roles(&snap)
    } else {
        Default::default()
    };
    let labels = if v.names {
        let regions: Vec<_> = snap.entries.iter().map(|e| &e.region).collect();
        Some(names::labels(&regions, &roles, true))
    } else {
        None
    };
    if v.summary {
        let rows = crate::map::summary::summarize(&snap.entries, &roles);
        if v.json {
            summary::write_json(out, &snap, &rows, v.sort)?;
        } else {
            summary::print(out, &snap, rows, v.sort, v.quiet)?;
        }
        return Ok(true);
    }
    if let Some(key) = v.sort {
        sort::sort_entries(&mut snap.entries, key);
    }
    if let Some(labels) = &labels {
        names::apply(&mut snap.entries, labels);
    }
    let opts = Options {
        format: v.format.clone(),
        quiet: v.quiet,
        show_path: v.show_path,
        // `--names` labels print as the kernel's bracketed names do.
        kernel_name: v.kernel_name || v.names,
        range: render::Range::default(),
        shm_minor: crate::render::ShmMinor::Lazy(crate::source::shm::shm_minor),
    };
    if v.solaris_table() {
        let table = solaris::build(&snap, v)?;
        if v.json {
            solaris_json::write(out, &snap, &table)?;
        } else {
            render::solaris::print(out, &snap.info, &table, v.quiet, v.reserved)?;
        }
        return Ok(true);
    }
    if v.json {
        render::json::write_process(out, &snap.info, &snap.entries, &opts)?;
        return Ok(true);
    }
    // The procps tables themselves, over the sorted / relabelled regions.
    let mut buf = Vec::new();
    if v.format.uses_smaps() {
        render::print_smaps_table(&mut buf, &opts, &snap.info, &snap.entries, columns)
            .map_err(|e| io::Error::other(e.to_string()))?;
    } else {
        let regions: Vec<_> = snap.entries.into_iter().map(|e| e.region).collect();
        render::print_maps_table(&mut buf, &opts, &snap.info, &regions)?;
    }
    out.write_all(&buf)?;
    Ok(true)
}
