//! What an installed `pmap` can tell about itself without cargo: the end of
//! `pmap --help` naming what goes beyond procps-ng ([`BEYOND_PROCPS`]), and
//! `pmap man [PAGE]` and `pmap completions SHELL`, generated from the same
//! clap description (`cli::command()`) as the files `cargo xtask install`
//! writes (`examples/pmap-docs.rs` calls [`man_pages`] and [`completions`]).

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;

use clap::Command;
use clap_complete::Shell;

pub use crate::cmd::common::help::BEYOND_PROCPS;

use crate::cli::self_doc_subcommands as subcommands;

/// Every man page, by file name (`pmap.1`, `pmap-trace.1`...), as
/// `clap_mangen::generate_to` names and writes them.
pub fn man_pages() -> Vec<(String, clap_mangen::Man)> {
    fn walk(cmd: Command, out: &mut Vec<(String, clap_mangen::Man)>) {
        let man = clap_mangen::Man::new(cmd.clone());
        out.push((man.get_filename(), man));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub.clone(), out);
        }
    }
    let mut cmd = crate::cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(cmd, &mut out);
    out
}

/// Writes the completions of `pmap` for `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut crate::cli::command(), "pmap", out);
}

/// `pmap man ...` and `pmap completions ...` (`args` with the program name).
pub fn main(args: &[OsString]) -> ExitCode {
    let which = args.get(1).cloned().unwrap_or_default();
    let Some(cmd) = subcommands().into_iter().find(|c| which == c.get_name()) else {
        return ExitCode::FAILURE;
    };
    let cmd = cmd.bin_name(format!("pmap {}", which.to_string_lossy()));
    let m = match cmd.try_get_matches_from(&args[1..]) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let mut out = io::stdout().lock();
    let written = if which == "man" {
        let pages = man_pages();
        let names = || -> Vec<&str> {
            pages
                .iter()
                .map(|(n, _)| n.trim_end_matches(".1"))
                .collect()
        };
        if m.get_flag("list") {
            writeln!(out, "{}", names().join("\n"))
        } else {
            let want = m.get_one::<String>("page").map_or("pmap", String::as_str);
            let want = want.trim_end_matches(".1");
            // `pmap man trace` for `pmap-trace`.
            let found = pages.iter().find(|(n, _)| {
                let n = n.trim_end_matches(".1");
                n == want || n.strip_prefix("pmap-") == Some(want)
            });
            match found {
                Some((_, man)) => man.render(&mut out),
                None => {
                    eprintln!(
                        "pmap man: no page {want:?} (the pages: {})",
                        names().join(", ")
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
    } else {
        // clap accepted only one of the shells `cli` lists.
        let shell = match m.get_one::<String>("shell").map(String::as_str) {
            Some("zsh") => Shell::Zsh,
            Some("fish") => Shell::Fish,
            _ => Shell::Bash,
        };
        // Into a buffer first: clap_complete panics on a failed write (a
        // closed pipe, `pmap completions bash | head`).
        let mut text = Vec::new();
        completions(shell, &mut text);
        out.write_all(&text)
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pmap {}: writing output: {e}", which.to_string_lossy());
            ExitCode::FAILURE
        }
    }
}

/// Whether `args` (with the program name) are `pmap man ...` or `pmap
/// completions ...`.
pub fn wanted(args: &[OsString]) -> bool {
    args.get(1)
        .is_some_and(|a| subcommands().iter().any(|c| a == c.get_name()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn pages_are_those_install_writes() {
        let names: Vec<String> = super::man_pages().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"pmap.1".to_string()), "{names:?}");
        assert!(names.contains(&"pmap-trace.1".to_string()), "{names:?}");
    }

    #[test]
    fn the_help_section_fits_80_columns() {
        for line in super::BEYOND_PROCPS.lines() {
            assert!(line.len() < 80, "{line:?}");
        }
    }
}
