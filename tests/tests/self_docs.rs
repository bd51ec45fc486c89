//! What an installed `pmap` tells about itself: `pmap --help` is
//! procps-ng's text followed by a section naming what goes beyond it, the
//! usage printed on errors stays procps-ng's alone, and `pmap man [PAGE]`
//! and `pmap completions SHELL` print the man pages and completions that
//! `cargo xtask install` writes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use pmap_tests::pmap_bin;

fn pmap(args: &[&str]) -> Output {
    Command::new(pmap_bin())
        .args(args)
        .output()
        .expect("run pmap")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_ends_with_what_goes_beyond_procps_but_error_usage_does_not() {
    let reference = pmap_tests::tool("pmap", "procps");
    let theirs = Command::new(&reference)
        .arg("--help")
        .output()
        .expect("run procps-ng's pmap");
    let ours = pmap(&["--help"]);
    assert_eq!(ours.status.code(), Some(0));
    let ours_text = text(&ours.stdout);
    let (procps_part, beyond) = ours_text
        .split_once("\nBeyond procps-ng:\n")
        .unwrap_or_else(|| panic!("no 'Beyond procps-ng:' section:\n{ours_text}"));
    // procps-ng's text comes first, unchanged but for the -k line (4.0.6's,
    // which Debian 12's 4.0.2 lacks).
    let k_line = " -k, --use-kernel-name       use names provided by kernel\n";
    assert_eq!(
        procps_part.replace(k_line, ""),
        text(&theirs.stdout).replace(k_line, "")
    );
    for what in [
        "pmap trace",
        "pmap exporter",
        "pmap replay",
        "pmap diff",
        "pmap --help-views",
    ] {
        assert!(beyond.contains(what), "{what} is not named:\n{beyond}");
    }
    for what in ["pmap man", "pmap completions"] {
        assert!(beyond.contains(what), "{what} is not named:\n{beyond}");
    }

    // An error prints procps-ng's usage alone, on stderr.
    let theirs = Command::new(&reference)
        .args(["-Z", "1"])
        .output()
        .expect("run procps-ng's pmap");
    let ours = pmap(&["-Z", "1"]);
    assert_eq!(ours.status.code(), theirs.status.code());
    let ours_err = text(&ours.stderr);
    assert!(!ours_err.contains("Beyond procps-ng"), "{ours_err}");
    // getopt names the program as invoked: compare past the first line.
    let tail = |s: &str| s.split_once('\n').map(|(_, t)| t.replace(k_line, ""));
    assert_eq!(tail(&ours_err), tail(&text(&theirs.stderr)));
}

#[test]
fn man_prints_each_page_install_writes() {
    let list = pmap(&["man", "--list"]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list.stderr));
    let pages = text(&list.stdout);
    let pages: Vec<&str> = pages.lines().collect();
    for page in ["pmap", "pmap-trace", "pmap-man", "pmap-completions"] {
        assert!(pages.contains(&page), "{page} missing from {pages:?}");
    }

    let main = pmap(&["man"]);
    assert_eq!(main.status.code(), Some(0), "{}", text(&main.stderr));
    assert!(
        text(&main.stdout).contains("\n.TH pmap 1 "),
        "not a man page"
    );
    assert_eq!(pmap(&["man", "pmap"]).stdout, main.stdout);
    let trace = pmap(&["man", "trace"]);
    assert!(text(&trace.stdout).contains("\n.TH pmap-trace 1 "));
    assert_eq!(pmap(&["man", "pmap-trace"]).stdout, trace.stdout);

    // The page reads as a man page (man-db renders it) and documents the
    // options beyond procps-ng.
    let mut man = Command::new(pmap_tests::tool("man", "man-db"))
        .args(["-l", "-"])
        .env("MANWIDTH", "100")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run man");
    man.stdin
        .take()
        .expect("piped stdin")
        .write_all(&main.stdout)
        .expect("feed man");
    let shown = man.wait_with_output().expect("man output");
    let page = text(&shown.stdout);
    assert!(shown.status.success(), "man: {}", text(&shown.stderr));
    for what in ["--help-views", "linux-vdso.so.1", "Locked", "completions"] {
        assert!(page.contains(what), "{what} not in the page:\n{page}");
    }

    let none = pmap(&["man", "nope"]);
    assert_eq!(none.status.code(), Some(1));
    let err = text(&none.stderr);
    assert!(
        err.contains("no page \"nope\"") && err.contains("pmap-trace"),
        "{err}"
    );
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let bash = pmap(&["completions", "bash"]);
    assert_eq!(bash.status.code(), Some(0), "{}", text(&bash.stderr));
    let dir = std::env::temp_dir().join(format!("pmap-completions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script = dir.join("pmap.bash");
    std::fs::write(&script, &bash.stdout).expect("write the script");
    // Sourced in bash, it completes pmap's options and subcommands.
    let complete = |words: &[&str]| -> String {
        let cur = words.last().copied().unwrap_or("");
        let prev = words[words.len().saturating_sub(2)];
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source \"$0\" && COMP_WORDS=({}) && COMP_CWORD={} && _pmap pmap \"$1\" \"$2\" && echo \"${{COMPREPLY[@]}}\"",
                words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
                words.len() - 1
            ))
            .arg(&script)
            .arg(cur)
            .arg(prev)
            .output()
            .expect("run bash");
        assert!(out.status.success(), "bash: {}", text(&out.stderr));
        text(&out.stdout)
    };
    assert!(complete(&["pmap", "--help-v"]).contains("--help-views"));
    assert_eq!(
        complete(&["pmap", "completions", ""]).trim(),
        "bash zsh fish"
    );
    let _ = std::fs::remove_dir_all(&dir);

    let zsh = text(&pmap(&["completions", "zsh"]).stdout);
    assert!(zsh.starts_with("#compdef pmap\n"), "{zsh}");
    let fish = text(&pmap(&["completions", "fish"]).stdout);
    assert!(fish.contains("complete -c pmap "), "{fish}");

    let bad = pmap(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert!(
        err.contains("tcsh") && err.contains("bash, zsh, fish"),
        "{err}"
    );
}
