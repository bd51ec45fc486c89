//! The whole command line as a clap `Command`, for `--help`-style docs, the
//! man page and shell completions (`cargo xtask install`).
//!
//! Snapshot mode parses its arguments itself (procps-ng compatible messages
//! and getopt semantics, `cmd::snapshot::getopt`); this description must list the
//! same options.
use clap::{Arg, ArgAction, Command, ValueHint};

pub fn command() -> Command {
    let flag = |id: &'static str, short: char, long: Option<&'static str>, help: &'static str| {
        let a = Arg::new(id)
            .short(short)
            .action(ArgAction::SetTrue)
            .help(help);
        match long {
            Some(l) => a.long(l),
            None => a,
        }
    };
    Command::new("pmap")
        .about("Report the memory map of a process, or trace it live")
        .long_about(
            "Report the memory map of one or more processes, as procps-ng's pmap does \
             (same output, byte for byte), or follow one live with `pmap trace PID`.",
        )
        .version(env!("CARGO_PKG_VERSION"))
        // The views beyond procps-ng (cmd/views/help.rs).
        .args(crate::cmd::views::help::clap_args())
        .disable_version_flag(true)
        .disable_help_flag(true)
        .arg(
            Arg::new("pid")
                .value_name("PID")
                .num_args(1..)
                .help("Process ids (also 0x.. hex, 0.. octal, or /proc/N); a thread id shows its process"),
        )
        .arg(flag(
            "extended",
            'x',
            Some("extended"),
            "show details (RSS and dirty size); with -S, -a, -s, -L, -r or -l the Solaris table: \
             RSS, Anon, Locked (mlock), Dirty, and Mode rwxsR (R: MAP_NORESERVE)",
        ))
        .arg(
            Arg::new("more-extended")
                .short('X')
                .action(ArgAction::Count)
                .help("show even more details (from /proc/PID/smaps); -XX: everything the kernel provides"),
        )
        .arg(flag("read-rc", 'c', Some("read-rc"), "read the default rc (~/.pmaprc)"))
        .arg(
            Arg::new("read-rc-from")
                .short('C')
                .long("read-rc-from")
                .value_name("file")
                .value_hint(ValueHint::FilePath)
                .help("read the rc from file"),
        )
        .arg(flag("create-rc", 'n', Some("create-rc"), "create new default rc"))
        .arg(
            Arg::new("create-rc-to")
                .short('N')
                .long("create-rc-to")
                .value_name("file")
                .value_hint(ValueHint::FilePath)
                .help("create new rc to file (pid arguments are not allowed with -n, -N)"),
        )
        .arg(flag("device", 'd', Some("device"), "show the device format"))
        .arg(flag("quiet", 'q', Some("quiet"), "do not display header and footer"))
        .arg(flag("show-path", 'p', Some("show-path"), "show path in the mapping"))
        .arg(flag("use-kernel-name", 'k', Some("use-kernel-name"), "use names provided by kernel"))
        .arg(
            Arg::new("range")
                .short('A')
                .long("range")
                .value_name("low>[,<high")
                .help("limit results to the given range (hexadecimal addresses)"),
        )
        .arg(
            Arg::new("help")
                .short('h')
                .long("help")
                .action(ArgAction::Help)
                .help("display this help and exit"),
        )
        .arg(
            Arg::new("version")
                .short('V')
                .long("version")
                .action(ArgAction::Version)
                .help("output version information and exit"),
        )
        .subcommands(self_doc_subcommands())
        .subcommand(
            <crate::cmd::trace::args::TraceArgs as clap::CommandFactory>::command()
                .name("trace")
                .about("Trace a process's memory map live (eBPF; polling without privileges)"),
        )
        .subcommand(
            <crate::cmd::exporter::args::ExporterArgs as clap::CommandFactory>::command()
                .name("exporter")
                .about("Serve Prometheus metrics of processes' memory maps (eBPF counters; /proc gauges)"),
        )
        .subcommand(
            <crate::cmd::replay::ReplayArgs as clap::CommandFactory>::command()
                .name("replay")
                .about("Print a recording (pmap trace --record) again, or the map at any moment"),
        )
        .subcommand(
            <crate::cmd::diff::DiffArgs as clap::CommandFactory>::command()
                .name("diff")
                .about("What changed in a memory map between two moments"),
        )
}

const SHELLS: [&str; 3] = ["bash", "zsh", "fish"];

/// `pmap man` and `pmap completions` (carried out by `self_docs`).
pub fn self_doc_subcommands() -> Vec<Command> {
    vec![
        Command::new("man")
            .about("Print a man page of pmap (roff; view with `pmap man | man -l -`)")
            .arg(
                Arg::new("page")
                    .value_name("PAGE")
                    .help("The page: pmap (default), pmap-trace, ... (--list shows them)"),
            )
            .arg(
                Arg::new("list")
                    .long("list")
                    .action(clap::ArgAction::SetTrue)
                    .help("List the pages"),
            ),
        Command::new("completions")
            .about("Print shell completions for pmap")
            .arg(
                Arg::new("shell")
                    .value_name("SHELL")
                    .required(true)
                    .value_parser(SHELLS)
                    .help("bash, zsh or fish"),
            ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_is_consistent() {
        super::command().debug_assert();
    }

    #[test]
    fn lists_every_snapshot_option() {
        let cmd = super::command();
        let shorts: String = cmd.get_arguments().filter_map(|a| a.get_short()).collect();
        // Every option letter getopt accepts (cmd::snapshot::OPTSTRING).
        for c in "xXrdqAhVcCnNpk".chars() {
            assert!(shorts.contains(c), "-{c} is not documented");
        }
    }
}
