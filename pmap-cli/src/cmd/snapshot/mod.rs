//! `pmap [options] PID...`: procps-ng 4.0.2's command line (plus 4.0.6's
//! `-k`), its messages and exit statuses, and the driver that reads each
//! process and hands the data to the printers.
//!
//! Exit status: 0; 1 for a usage error or when some process's maps could
//! not be opened; 42 ORed in when some PID did not exist.
pub mod getopt;

use std::{
    ffi::OsString,
    io::{self, BufWriter, Write},
    os::unix::ffi::OsStringExt,
    path::PathBuf,
    process::ExitCode,
};

use crate::{
    cmd::common::{
        exit, format, numbers, rc,
        table::{Fatal, Rendered, overlaps_warning, render_process_in},
    },
    map::process::ProcessInfo,
    render::{Format, Options, Range, SmapsColumns},
    source::{checked::ATTEMPTS, pid_dir::PidDir, process, shm},
};
use getopt::{Item, LongOpt};

/// Our answer to `-V`, in procps-ng's shape (`pmap from procps-ng 4.0.2`).
pub const VERSION_NAME: &str = concat!("pmap-rs ", env!("CARGO_PKG_VERSION"));

const OPTSTRING: &[u8] = b"xXrdqA:hVcC:nN:pk";

const LONGOPTS: &[LongOpt] = &[
    LongOpt {
        name: "extended",
        has_arg: false,
        val: b'x',
    },
    LongOpt {
        name: "device",
        has_arg: false,
        val: b'd',
    },
    LongOpt {
        name: "quiet",
        has_arg: false,
        val: b'q',
    },
    LongOpt {
        name: "range",
        has_arg: true,
        val: b'A',
    },
    LongOpt {
        name: "help",
        has_arg: false,
        val: b'h',
    },
    LongOpt {
        name: "version",
        has_arg: false,
        val: b'V',
    },
    LongOpt {
        name: "read-rc",
        has_arg: false,
        val: b'c',
    },
    LongOpt {
        name: "read-rc-from",
        has_arg: true,
        val: b'C',
    },
    LongOpt {
        name: "create-rc",
        has_arg: false,
        val: b'n',
    },
    LongOpt {
        name: "create-rc-to",
        has_arg: true,
        val: b'N',
    },
    LongOpt {
        name: "show-path",
        has_arg: false,
        val: b'p',
    },
    LongOpt {
        name: "use-kernel-name",
        has_arg: false,
        val: b'k',
    },
];

/// The `--help` text for program name `prog`.
pub fn usage_text(prog: &str) -> String {
    format!(
        "
Usage:
 {prog} [options] PID [PID ...]

Options:
 -x, --extended              show details
 -X                          show even more details
            WARNING: format changes according to /proc/PID/smaps
 -XX                         show everything the kernel provides
 -c, --read-rc               read the default rc
 -C, --read-rc-from=<file>   read the rc from file
 -n, --create-rc             create new default rc
 -N, --create-rc-to=<file>   create new rc to file
            NOTE: pid arguments are not allowed with -n, -N
 -d, --device                show the device format
 -q, --quiet                 do not display header and footer
 -p, --show-path             show path in the mapping
 -k, --use-kernel-name       use names provided by kernel
 -A, --range=<low>[,<high>]  limit results to the given range

 -h, --help     display this help and exit
 -V, --version  output version information and exit

For more details see pmap(1).
"
    )
}

/// Where messages go, named as procps-ng names itself.
struct Ctx<'a> {
    /// `argv[0]` as given (getopt's messages use it).
    prog: String,
    err: &'a mut dyn Write,
}

impl Ctx<'_> {
    fn warn(&mut self, msg: &str) {
        let _ = writeln!(self.err, "{}: {msg}", self.prog);
    }
}

/// The outcome of option handling: run on these PIDs, or exit.
enum Flow {
    Exit(u8),
    Run(Vec<Vec<u8>>, Options),
}

/// Runs `pmap` on `args` (as from `std::env::args_os`), writing to `out`
/// and `err`; returns the exit status.
pub fn run(args: Vec<OsString>, out: &mut impl Write, err: &mut dyn Write) -> u8 {
    let args: Vec<Vec<u8>> = args.into_iter().map(OsStringExt::into_vec).collect();
    let argv0 = args.first().cloned().unwrap_or_else(|| b"pmap".to_vec());
    let short = argv0
        .rsplit(|&c| c == b'/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or(b"pmap");
    let mut ctx = Ctx {
        prog: String::from_utf8_lossy(short).into_owned(),
        err,
    };
    let status = match options(&args, &mut ctx, out) {
        Ok(Flow::Exit(code)) => code,
        Ok(Flow::Run(pids, opts)) => match run_pids(&pids, &opts, &mut ctx, out) {
            Ok(code) => code,
            Err(Fatal::Message(m)) => {
                ctx.warn(&m);
                1
            }
            Err(Fatal::Io(e)) => return write_failed(&mut ctx, e),
        },
        Err(e) => return write_failed(&mut ctx, e),
    };
    match out.flush() {
        Ok(()) => status,
        Err(e) => write_failed(&mut ctx, e),
    }
}

/// A closed pipe (`pmap ... | head`) ends the run quietly; other write
/// errors are reported.
fn write_failed(ctx: &mut Ctx, e: io::Error) -> u8 {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return 0;
    }
    // The C library's text, as procps-ng prints it (without Rust's
    // " (os error N)").
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    ctx.warn(&format!("write error: {text}"));
    1
}

fn usage_error(ctx: &mut Ctx) -> Flow {
    let _ = ctx.err.write_all(usage_text(&ctx.prog).as_bytes());
    Flow::Exit(exit::FAILURE)
}

fn options(args: &[Vec<u8>], ctx: &mut Ctx, out: &mut impl Write) -> io::Result<Flow> {
    if args.len() < 2 {
        return Ok(usage_error(ctx));
    }
    let posix = std::env::var_os("POSIXLY_CORRECT").is_some();
    let parsed = getopt::parse(args, OPTSTRING, LONGOPTS, posix);
    let (mut x, mut big_x, mut d, mut q, mut c, mut big_c, mut n, mut big_n) =
        (false, 0u32, false, false, false, false, false, false);
    let mut opts = Options::default();
    let mut range = Range::default();
    let mut rc_file: Option<Vec<u8>> = None;
    for item in parsed.items {
        let (opt, arg) = match item {
            Item::Error(m) => {
                let _ = ctx.err.write_all(&m);
                return Ok(usage_error(ctx));
            }
            Item::Opt(o, a) => (o, a),
        };
        match opt {
            b'x' => x = true,
            b'X' => big_x += 1,
            b'r' => ctx.warn("option -r is ignored as SunOS compatibility"),
            b'd' => d = true,
            b'q' => q = true,
            b'A' => {
                let arg = arg.unwrap_or_default();
                match numbers::parse_range(&arg, range) {
                    Ok(r) => range = r,
                    Err(numbers::BadRange) => {
                        let shown = String::from_utf8_lossy(&arg).into_owned();
                        ctx.warn(&format!("failed to parse argument: '{shown}'"));
                        return Ok(Flow::Exit(exit::FAILURE));
                    }
                }
            }
            b'h' => {
                out.write_all(usage_text(&ctx.prog).as_bytes())?;
                out.write_all(crate::cmd::common::help::BEYOND_PROCPS.as_bytes())?;
                return Ok(Flow::Exit(0));
            }
            b'V' => {
                writeln!(out, "{} from {VERSION_NAME}", ctx.prog)?;
                return Ok(Flow::Exit(0));
            }
            b'c' => c = true,
            b'C' => {
                big_c = true;
                rc_file = arg;
            }
            b'n' => n = true,
            b'N' => {
                big_n = true;
                rc_file = arg;
            }
            b'p' => opts.show_path = true,
            b'k' => opts.kernel_name = true,
            _ => return Ok(usage_error(ctx)),
        }
    }
    let operands = parsed.operands;
    let exclusive = [c, big_c, d, n, big_n, x, big_x > 0];
    if exclusive.iter().filter(|&&b| b).count() > 1 {
        ctx.warn("options -c, -C, -d, -n, -N, -x, -X are mutually exclusive");
        return Ok(Flow::Exit(exit::FAILURE));
    }
    if (n || big_n) && (q || opts.show_path) {
        ctx.warn("options -p, -q are mutually exclusive with -n, -N");
        return Ok(Flow::Exit(exit::FAILURE));
    }
    if (n || big_n) && !operands.is_empty() {
        ctx.warn("too many arguments");
        return Ok(Flow::Exit(exit::FAILURE));
    }
    if big_n {
        let path = PathBuf::from(OsString::from_vec(rc_file.unwrap_or_default()));
        return Ok(create_rc(ctx, &path, None));
    }
    if n {
        let Some(path) = default_rc(ctx) else {
            return Ok(Flow::Exit(exit::FAILURE));
        };
        return Ok(create_rc(ctx, &path, Some(())));
    }
    if operands.is_empty() {
        ctx.warn("argument missing");
        return Ok(Flow::Exit(exit::FAILURE));
    }
    if c || big_c {
        let path = if big_c {
            PathBuf::from(OsString::from_vec(rc_file.unwrap_or_default()))
        } else {
            match default_rc(ctx) {
                Some(p) => p,
                None => return Ok(Flow::Exit(exit::FAILURE)),
            }
        };
        let mut warnings = Vec::new();
        let read = rc::read(&path, &mut |w| warnings.push(w));
        for w in warnings {
            ctx.warn(&w);
        }
        let Some(rc) = read else {
            if big_c {
                ctx.warn("couldn't read the rc file");
            } else {
                let prog = ctx.prog.clone();
                ctx.warn(&format!("couldn't read ~/.{prog}rc"));
            }
            return Ok(Flow::Exit(exit::FAILURE));
        };
        if rc.show_path_toggles % 2 == 1 {
            opts.show_path = !opts.show_path;
        }
        opts.format = Format::Rc(rc.fields);
    } else if let Ok(f) = format::from_letters(x, big_x, d) {
        // A conflict of -x, -X and -d was refused above, with procps-ng's
        // message.
        opts.format = f;
    }
    opts.quiet = q;
    opts.range = range;
    Ok(Flow::Run(operands, opts))
}

/// `$HOME/.pmaprc` (named after the program, as procps-ng does).
fn default_rc(ctx: &mut Ctx) -> Option<PathBuf> {
    let path = rc::default_path(&ctx.prog);
    if path.is_none() {
        ctx.warn("HOME variable undefined");
    }
    path
}

/// `-N FILE` (`default` is None) or `-n`.
fn create_rc(ctx: &mut Ctx, path: &std::path::Path, default: Option<()>) -> Flow {
    let result = rc::create(path);
    if let Err(rc::CreateError::Exists) = result {
        ctx.warn("the file already exists - delete or rename it first");
    }
    let prog = ctx.prog.clone();
    match (result.is_ok(), default) {
        (true, None) => {
            ctx.warn("rc file successfully created, feel free to edit the content");
            Flow::Exit(0)
        }
        (true, Some(())) => {
            ctx.warn(&format!(
                "~/.{prog}rc file successfully created, feel free to edit the content"
            ));
            Flow::Exit(0)
        }
        (false, None) => {
            ctx.warn("couldn't create the rc file");
            Flow::Exit(exit::FAILURE)
        }
        (false, Some(())) => {
            ctx.warn(&format!("couldn't create ~/.{prog}rc"));
            Flow::Exit(exit::FAILURE)
        }
    }
}

fn run_pids(
    operands: &[Vec<u8>],
    opts: &Options,
    ctx: &mut Ctx,
    out: &mut impl Write,
) -> Result<u8, Fatal> {
    let mut pids = Vec::with_capacity(operands.len());
    for arg in operands {
        match numbers::parse_pid(arg) {
            Ok(Some(pid)) => pids.push(pid),
            Ok(None) => {}
            Err(numbers::BadPid) => {
                let _ = usage_error(ctx);
                return Ok(1);
            }
        }
    }
    if pids.is_empty() {
        return Err(Fatal::Message("library failed pids statistics".into()));
    }
    // Like procps-ng: look every process up first, then print each. Each
    // keeps its /proc directory open, so that a process that exits in
    // between is not confused with a new one given its id.
    let found: Vec<(PidDir, ProcessInfo)> = pids
        .iter()
        .filter_map(|&p| {
            let dir = PidDir::open(p).ok()?;
            let info = process::fetch_in(&dir)?;
            Some((dir, info))
        })
        .collect();
    let mut opts = opts.clone();
    if !opts.format.uses_smaps() || opts.format == Format::Extended {
        opts.shm_minor = crate::render::ShmMinor::Lazy(shm::shm_minor);
    }
    let mut columns = SmapsColumns::default();
    let mut status = 0u8;
    for (dir, info) in &found {
        match render_process_in(out, dir, info, &opts, &mut columns)? {
            Rendered::Shown => {}
            Rendered::Overlaps(n) => ctx.warn(&overlaps_warning(info.pid, n)),
            Rendered::Unreadable => status |= exit::FAILURE,
            Rendered::Vanished => {
                ctx.warn(&format!(
                    "process {} exited while its memory map was being read; \
                     nothing is shown for it, since the map read may be incomplete",
                    info.pid
                ));
                status |= exit::MISSING;
            }
            Rendered::Incomplete { exited } => {
                ctx.warn(&format!(
                    "process {} {} while its memory map was being read; the table above \
                     is incomplete",
                    info.pid,
                    if exited {
                        "exited"
                    } else {
                        "replaced its program (execve)"
                    }
                ));
                status |= if exited { exit::MISSING } else { exit::FAILURE };
            }
            Rendered::Unsettled => {
                ctx.warn(&format!(
                    "process {} replaced its program (execve) each of the {ATTEMPTS} times \
                     its memory map was read; nothing is shown for it, try again",
                    info.pid
                ));
                status |= exit::FAILURE;
            }
        }
    }
    if found.len() < pids.len() {
        status |= exit::MISSING;
    }
    Ok(status)
}

/// `main` for snapshot mode.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(128 * 1024, stdout.lock());
    let mut err = io::stderr();
    ExitCode::from(run(args, &mut out, &mut err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pmap(args: &[&str]) -> (String, String, u8) {
        let mut argv: Vec<OsString> = vec!["/usr/local/bin/pmap".into()];
        argv.extend(args.iter().map(OsString::from));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = run(argv, &mut out, &mut err);
        (
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
            status,
        )
    }

    #[test]
    fn usage_and_version() {
        let (out, err, st) = pmap(&[]);
        assert_eq!((out.as_str(), st), ("", 1));
        assert_eq!(err, usage_text("pmap"));
        let (out, _, st) = pmap(&["--help"]);
        let help = usage_text("pmap") + crate::cmd::common::help::BEYOND_PROCPS;
        assert_eq!((out, st), (help, 0));
        let (out, _, st) = pmap(&["-V"]);
        assert_eq!(
            (out.as_str(), st),
            (
                concat!("pmap from pmap-rs ", env!("CARGO_PKG_VERSION"), "\n"),
                0
            )
        );
    }

    #[test]
    fn option_errors() {
        let (_, err, st) = pmap(&["-Z", "1"]);
        assert_eq!(st, 1);
        // getopt names the program as invoked, pmap by its short name.
        assert!(
            err.starts_with(
                "/usr/local/bin/pmap: invalid option -- 'Z'\n\nUsage:\n pmap [options]"
            )
        );
        let (_, err, st) = pmap(&["-x", "-d", "1"]);
        assert_eq!(
            (err.as_str(), st),
            (
                "pmap: options -c, -C, -d, -n, -N, -x, -X are mutually exclusive\n",
                1
            )
        );
        let (_, err, st) = pmap(&["-A", "1g", "1"]);
        assert_eq!(
            (err.as_str(), st),
            ("pmap: failed to parse argument: '1g'\n", 1)
        );
        let (_, err, st) = pmap(&["-q"]);
        assert_eq!((err.as_str(), st), ("pmap: argument missing\n", 1));
        let (_, err, st) = pmap(&["-n", "-q"]);
        assert_eq!(
            (err.as_str(), st),
            (
                "pmap: options -p, -q are mutually exclusive with -n, -N\n",
                1
            )
        );
        let (_, err, st) = pmap(&["/proc/self"]);
        assert_eq!(
            (err.as_str(), st),
            ("pmap: library failed pids statistics\n", 1)
        );
        let (_, err, st) = pmap(&["0"]);
        assert_eq!((err, st), (usage_text("pmap"), 1));
    }

    #[test]
    fn own_process_and_missing_ones() {
        let me = std::process::id().to_string();
        let (out, err, st) = pmap(&["-q", &me, "2147483000"]);
        assert_eq!((err.as_str(), st), ("", 42));
        assert!(out.starts_with(&format!("{me}:   ")));
        assert!(out.contains("  [ stack ]\n"));
        let (out, _, st) = pmap(&["-XX", &me]);
        assert_eq!(st, 0);
        assert!(out.contains(" VmFlags Mapping\n"));
        assert!(out.ends_with(" KB \n"));
    }
}
