//! Snapshot mode (`pmap`, `-x`, `-X`, `-XX`) against targets that exit or
//! change while pmap reads them (issue 7: "the target exits mid-read of
//! smaps", "/proc files that change between two reads").
//!
//! The kernel ends `/proc/PID/smaps` early, with no error, when the address
//! space dies mid-read: pmap must never print such a partial read as if it
//! were the whole map. And when the map changes between two reads of one
//! file, the rows must still come out sorted and non-overlapping, with
//! totals equal to the rows printed.
//!
//! Run with `--nocapture` to see how often each race was hit.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use pmap_tests::{pmap_bin, pmap_table, rng::Rng, workload_bin};

const MODES: [&str; 4] = ["", "-x", "-X", "-XX"];

/// Regions of the many_maps target: enough that reading its smaps takes
/// long enough to kill it in the middle.
const MAPS: &str = "20000";

/// A child killed and reaped when dropped, so a failing test leaves no
/// busy target behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn many_maps() -> Child {
    many_maps_started(Command::new(workload_bin("many_maps")).arg(MAPS))
}

/// Starts `cmd` (many_maps and its arguments) and waits for its ready line.
fn many_maps_started(cmd: &mut Command) -> Child {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("many_maps starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("many_maps's ready line");
    assert!(line.starts_with("ready "), "many_maps said {line:?}");
    child
}

fn pmap(mode: &str, pid: u32) -> Command {
    let mut c = Command::new(pmap_bin());
    if !mode.is_empty() {
        c.arg(mode);
    }
    c.arg(pid.to_string());
    c
}

/// How one pmap run on a target killed at a random moment ended.
#[derive(Debug, Default)]
struct Outcomes {
    /// The whole table, exit 0.
    complete: u32,
    /// The one-line "exited while ... being read" error, exit 42.
    cut: u32,
    /// A table too large to hold back, printed as it was read, then the
    /// one-line error saying the table above is incomplete, exit 42.
    cut_after_rows: u32,
    /// Killed before pmap looked the process up: nothing, exit 42.
    missing: u32,
    /// A zombie by the time pmap looked: `[comm] <defunct>` and no rows,
    /// exit 0 (as procps-ng shows zombies).
    zombie: u32,
}

/// A target with 20,000 regions is SIGKILLed at a random moment while
/// pmap reads it, in every snapshot mode, half the time reaped at once
/// (the read then fails with ESRCH) and half the time left a zombie (the
/// file just ends early). pmap must print either the whole table, or one
/// line saying the process exited with exit status 42: with nothing on
/// stdout, or, for a table larger than pmap holds back (see
/// `a_table_too_large_to_hold_back_is_flagged_when_its_process_dies`),
/// after the rows it printed, saying the table above is incomplete.
#[test]
fn target_killed_mid_read_never_prints_a_partial_table() {
    // Seeded by the process id: the delays differ from run to run.
    let mut rng = Rng::new(u64::from(std::process::id()));
    let runs_per_mode = 16;
    let mut report = Vec::new();
    for mode in MODES {
        // The whole table of an undisturbed target, and how long it takes.
        let mut target = many_maps();
        let started = Instant::now();
        let full = pmap(mode, target.id()).output().expect("pmap runs");
        let took = started.elapsed();
        let _ = target.kill();
        let _ = target.wait();
        assert!(full.status.success(), "{mode}: {full:?}");
        let full = pmap_table::parse(mode, &String::from_utf8_lossy(&full.stdout))
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        full.check_consistent()
            .unwrap_or_else(|e| panic!("{mode}, undisturbed: {e}"));
        let want_rows = full.rows.len();

        let mut seen = Outcomes::default();
        for run in 0..runs_per_mode {
            let mut target = Killed(many_maps());
            let pid = target.0.id();
            let reader = pmap(mode, pid)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("pmap starts");
            // Anywhere from before pmap looks at the process to after it
            // would have finished.
            let span = took.as_micros() as u64 * 5 / 4 + 1;
            std::thread::sleep(Duration::from_micros(rng.next_u64() % span));
            let _ = target.0.kill();
            if run % 2 == 0 {
                let _ = target.0.wait();
            }
            let out = reader.wait_with_output().expect("pmap finishes");
            drop(target);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let code = out.status.code();
            let what = format!(
                "{mode} run {run}: exit {code:?}, {} bytes of output, stderr {stderr:?}",
                stdout.len()
            );
            assert!(!stderr.contains("panicked"), "{what}");
            let defunct = stdout
                .lines()
                .next()
                .is_some_and(|l| l.ends_with("<defunct>"));
            match code {
                Some(0) if defunct => {
                    let rows = stdout
                        .lines()
                        .skip(1)
                        .filter(|l| {
                            l.split_whitespace()
                                .next()
                                .is_some_and(|w| w.len() >= 8 && u64::from_str_radix(w, 16).is_ok())
                        })
                        .count();
                    assert_eq!(rows, 0, "{what}: rows shown for a zombie\n{stdout}");
                    seen.zombie += 1;
                }
                Some(0) => {
                    let got =
                        pmap_table::parse(mode, &stdout).unwrap_or_else(|e| panic!("{what}: {e}"));
                    got.check_consistent()
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(
                        got.rows.len(),
                        want_rows,
                        "{what}: a partial table was printed as complete"
                    );
                    assert_eq!(stderr, "", "{what}");
                    seen.complete += 1;
                }
                Some(42) if stdout.is_empty() && stderr.is_empty() => seen.missing += 1,
                Some(42) => {
                    assert_eq!(
                        stderr.lines().count(),
                        1,
                        "{what}: one line of error expected"
                    );
                    assert!(
                        stderr.starts_with(&format!("pmap: process {pid} exited while")),
                        "{what}"
                    );
                    if stdout.is_empty() {
                        seen.cut += 1;
                    } else {
                        assert!(
                            stderr.contains("the table above is incomplete"),
                            "{what}: rows printed for a process that exited, unflagged"
                        );
                        seen.cut_after_rows += 1;
                    }
                }
                _ => panic!("{what}\n{stdout}"),
            }
        }
        report.push(format!("{mode:>3}: {seen:?}"));
        assert!(
            seen.cut + seen.cut_after_rows > 0,
            "{mode}: the kill never landed during the read in {runs_per_mode} runs \
             ({seen:?}); the test did not test anything"
        );
    }
    eprintln!("kills during the read, by mode:\n{}", report.join("\n"));
}

/// pmap holds a table back until its read is judged whole, up to 4 MiB;
/// a larger one is printed as it is read. When its process dies during the
/// read, the rows already printed must be followed by one line saying the
/// table above is incomplete (status 42), never pass for the whole map.
/// `-p` on 20,000 mappings of a file with a long path makes such a table
/// (the `-X` tables are no longer printed before their read is judged).
#[test]
fn a_table_too_large_to_hold_back_is_flagged_when_its_process_dies() {
    const HELD: usize = 4 << 20;
    let mut rng = Rng::new(u64::from(std::process::id()));
    let dir = std::env::temp_dir()
        .join(format!("pmap-long-{}", std::process::id()))
        .join("d".repeat(200));
    std::fs::create_dir_all(&dir).expect("a directory with a long path");
    let start = || {
        Killed(many_maps_started(
            Command::new(workload_bin("many_maps"))
                .args([MAPS, "--file"])
                .env("TMPDIR", &dir),
        ))
    };
    let target = start();
    let started = Instant::now();
    let full = pmap("-p", target.0.id()).output().expect("pmap runs");
    let took = started.elapsed();
    drop(target);
    assert!(full.status.success(), "{full:?}");
    assert!(
        full.stdout.len() > HELD + HELD / 8,
        "the table ({} bytes) must be larger than what pmap holds back",
        full.stdout.len()
    );
    let whole_rows = full.stdout.iter().filter(|&&c| c == b'\n').count();
    let (mut cut_after_rows, mut other) = (0, Vec::new());
    for run in 0..40 {
        let target = start();
        let pid = target.0.id();
        let reader = pmap("-p", pid)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pmap starts");
        // In the last part of the read, once more than 4 MiB went out.
        let late = took.as_micros() as u64;
        std::thread::sleep(Duration::from_micros(
            late * 7 / 10 + rng.next_u64() % (late * 4 / 10 + 1),
        ));
        drop(target);
        let out = reader.wait_with_output().expect("pmap finishes");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let rows = out.stdout.iter().filter(|&&c| c == b'\n').count();
        let what = format!(
            "run {run}: {:?}, {rows} lines of {whole_rows}, stderr {stderr:?}",
            out.status
        );
        match out.status.code() {
            Some(0) => {
                assert_eq!(rows, whole_rows, "{what}: a partial table passed as whole");
                other.push("whole");
            }
            Some(42) if out.stdout.is_empty() => other.push("nothing"),
            Some(42) => {
                assert!(
                    out.stdout.len() > HELD,
                    "{what}: rows printed, yet held back"
                );
                assert!(rows < whole_rows, "{what}");
                assert_eq!(stderr.lines().count(), 1, "{what}");
                assert!(
                    stderr.starts_with(&format!("pmap: process {pid} exited while"))
                        && stderr.contains("the table above is incomplete"),
                    "{what}"
                );
                cut_after_rows += 1;
                if cut_after_rows == 3 {
                    break;
                }
            }
            _ => panic!("{what}"),
        }
    }
    let _ = std::fs::remove_dir_all(dir.parent().expect("the test's directory"));
    assert!(
        cut_after_rows > 0,
        "the kill never landed after 4 MiB of rows went out ({other:?}); \
         the test did not test anything"
    );
}

/// How often plain reads of `/proc/PID/smaps` see rows overlap (the map
/// changed between two read() calls): proof that a target races.
fn racing_reads(pid: u32, tries: u32) -> u32 {
    let mut raced_reads = 0;
    for _ in 0..tries {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
            continue;
        };
        let mut prev_end = 0u64;
        let mut raced = false;
        for l in text.lines() {
            let Some((range, _)) = l.split_once(' ') else {
                continue;
            };
            let Some((a, b)) = range.split_once('-') else {
                continue;
            };
            let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
                continue;
            };
            raced |= a < prev_end;
            prev_end = b;
        }
        raced_reads += u32::from(raced);
    }
    raced_reads
}

/// Targets that change their map all the time: trace_storm (tens of
/// thousands of mmap/mprotect/munmap calls a second) and many_maps
/// --churn (pages flipping between read-only and writable, so regions
/// merge and split). Reading smaps takes many read() calls, and the map
/// changes between them: a region seen twice, or overlapping the one
/// before. pmap must exit 0 in every mode with rows sorted and
/// non-overlapping, and totals equal to the rows printed.
#[test]
fn map_changing_during_the_read_gives_consistent_tables() {
    let targets: [(&str, &[&str]); 2] = [
        (
            "trace_storm",
            &["--rounds", "1", "--per-round", "100000000000"],
        ),
        ("many_maps", &["12", "--churn", "100000000"]),
    ];
    let runs = 60;
    let mut report = Vec::new();
    for (bin, args) in targets {
        let mut target = Killed(
            Command::new(workload_bin(bin))
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("{bin} starts: {e}")),
        );
        let pid = target.0.id();
        let mut go = target.0.stdin.take().expect("piped stdin");
        if bin == "many_maps" {
            // It reads its go line once its mappings exist, after `ready`.
            let mut line = String::new();
            BufReader::new(target.0.stdout.take().expect("piped stdout"))
                .read_line(&mut line)
                .expect("many_maps's ready line");
            assert!(line.starts_with("ready "), "many_maps said {line:?}");
        }
        writeln!(go).expect("start the changes");
        drop(go);
        // Proof that the map changes under a reader: without it the runs
        // below would check tables of a still map.
        let (mut raced, mut tries) = (0, 0);
        while raced == 0 && tries < 4000 {
            raced += racing_reads(pid, 200);
            tries += 200;
        }
        assert!(
            raced > 0,
            "{bin}: no plain read of smaps out of {tries} saw the map change; the target is not racing"
        );
        let mut warned = 0;
        for mode in MODES {
            for run in 0..runs {
                let out = pmap(mode, pid).output().expect("pmap runs");
                let stdout = String::from_utf8_lossy(&out.stdout);
                let stderr = String::from_utf8_lossy(&out.stderr);
                let what = format!(
                    "{bin} {mode} run {run}: {:?}, stderr {stderr:?}",
                    out.status
                );
                assert!(out.status.success(), "{what}");
                assert!(!stderr.contains("panicked"), "{what}");
                if !stderr.is_empty() {
                    assert!(stderr.contains("changed its memory map"), "{what}");
                    warned += 1;
                }
                let got =
                    pmap_table::parse(mode, &stdout).unwrap_or_else(|e| panic!("{what}: {e}"));
                got.check_consistent()
                    .unwrap_or_else(|e| panic!("{what}: {e}\n{stdout}"));
            }
        }
        drop(target);
        report.push(format!(
            "{bin}: plain reads of smaps with overlapping rows {raced}/{tries}; \
             pmap runs that fell back to dropping overlaps {warned}/{}",
            runs * MODES.len()
        ));
    }
    eprintln!("{}", report.join("\n"));
}

/// many_maps, which execs `sleep` when it reads its go line.
fn many_maps_then_sleep() -> (Killed, std::process::ChildStdin) {
    let sleep = pmap_tests::tool("sleep", "coreutils");
    let mut child = Command::new(workload_bin("many_maps"))
        .arg(MAPS)
        .arg("--exec-on-go")
        .arg(&sleep)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("many_maps starts");
    let go = child.stdin.take().expect("piped stdin");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("many_maps's ready line");
    assert!(line.starts_with("ready "), "many_maps said {line:?}");
    (Killed(child), go)
}

/// README: "An execve during the read makes it read again (3 tries, then
/// status 1)". A 20,000-region target execs `sleep` at a random moment
/// while pmap reads it, in every mode: pmap prints the whole table of one
/// program or of the other, never rows of both; or, for a table too large
/// to hold back (more than 4 MiB of rows printed as they are read), the
/// rows it printed and one line saying the program was replaced and the
/// table above is incomplete, status 1.
#[test]
fn execve_mid_read_shows_one_program_whole() {
    let mut rng = Rng::new(u64::from(std::process::id()));
    let mut report = Vec::new();
    // The name its map rows show sleep's file by (sleep may be a link to
    // a multi-call binary).
    let sleep_file = std::fs::canonicalize(pmap_tests::tool("sleep", "coreutils"))
        .expect("sleep's file")
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    for mode in MODES {
        let (target, _go) = many_maps_then_sleep();
        let started = Instant::now();
        let full = pmap(mode, target.0.id()).output().expect("pmap runs");
        let took = started.elapsed();
        drop(target);
        let full = pmap_table::parse(mode, &String::from_utf8_lossy(&full.stdout))
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        let want_rows = full.rows.len();
        let (mut old, mut new, mut incomplete) = (0, 0, 0);
        for run in 0..12 {
            let (target, mut go) = many_maps_then_sleep();
            let pid = target.0.id();
            let reader = pmap(mode, pid)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("pmap starts");
            let span = took.as_micros() as u64 * 5 / 4 + 1;
            std::thread::sleep(Duration::from_micros(rng.next_u64() % span));
            writeln!(go).expect("let many_maps exec");
            let out = reader.wait_with_output().expect("pmap finishes");
            drop(target);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let what = format!(
                "{mode} run {run}: {:?}, {} bytes of output, stderr {stderr:?}",
                out.status,
                stdout.len()
            );
            let first = stdout.lines().next().unwrap_or_default();
            match out.status.code() {
                Some(0) => {
                    assert_eq!(stderr, "", "{what}");
                    let got =
                        pmap_table::parse(mode, &stdout).unwrap_or_else(|e| panic!("{what}: {e}"));
                    got.check_consistent()
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    if first.contains("many_maps") {
                        assert_eq!(got.rows.len(), want_rows, "{what}: part of the old map");
                        old += 1;
                    } else {
                        assert!(first.contains("sleep"), "{what}: {first:?}");
                        // sleep maps a few dozen regions, many_maps 20,000.
                        assert!(got.rows.len() < 100, "{what}: rows of the old map");
                        // The kernel shows the new address space while it
                        // still maps the program into it ([stack] and
                        // [vsyscall] alone at first): a whole map of sleep
                        // has sleep itself in it.
                        assert!(
                            stdout
                                .lines()
                                .skip(1)
                                .any(|l| l.ends_with(&format!(" {sleep_file}"))),
                            "{what}: a map of sleep still being loaded\n{stdout}"
                        );
                        new += 1;
                    }
                }
                Some(1) => {
                    assert_eq!(stderr.lines().count(), 1, "{what}");
                    assert!(
                        stderr.starts_with(&format!(
                            "pmap: process {pid} replaced its program (execve) while its memory \
                             map was being read; the table above is incomplete"
                        )) && !stdout.is_empty(),
                        "{what}"
                    );
                    incomplete += 1;
                }
                _ => panic!("{what}\n{stdout}"),
            }
        }
        report.push(format!(
            "{mode:>3}: whole old table {old}, whole new table {new}, incomplete {incomplete}"
        ));
    }
    eprintln!("execve during the read, by mode:\n{}", report.join("\n"));
}
