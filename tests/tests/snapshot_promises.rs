//! README promises about snapshot mode that the compatibility tests do not
//! reach: output to a closed pipe (`pmap ... | head`) stops quietly with
//! status 0, other write errors say `pmap: write error: ...` with status 1,
//! and a region name longer than procps-ng's ~950-byte line buffer is shown
//! whole (`-X`/`-XX` cut it at 127 bytes, as procps-ng does).

mod common;

use std::{
    ffi::OsString,
    io::{BufRead, BufReader},
    os::unix::process::ExitStatusExt,
    process::{Command, Stdio},
};

use common::{Env, REFERENCE, Stopped, TempDir, lines, os, reference, run};

fn ours() -> std::path::PathBuf {
    pmap_tests::pmap_bin()
}

/// A target with 20,000 regions: `-x` prints about 1.5 MB, far more than a
/// pipe holds, so pmap is still writing when the reader goes away.
fn many_maps() -> Stopped {
    let mut cmd = Command::new(pmap_tests::workload_bin("many_maps"));
    cmd.arg("20000");
    Stopped::start(cmd)
}

#[test]
fn closed_pipe_stops_quietly_with_status_0() {
    let target = many_maps();
    for format in [&[][..], &["-x"], &["-X"]] {
        let mut args: Vec<String> = format.iter().map(|s| s.to_string()).collect();
        args.push(target.pid.to_string());
        let mut pmap = Command::new(ours())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pmap starts");
        // Read one line, as `head -1` would, and close the pipe.
        let mut first = String::new();
        BufReader::new(pmap.stdout.take().expect("piped stdout"))
            .read_line(&mut first)
            .expect("pmap's first line");
        assert!(first.starts_with(&format!("{}:", target.pid)), "{first:?}");
        let out = pmap.wait_with_output().expect("pmap ends");
        assert_eq!(
            (out.status.code(), out.status.signal()),
            (Some(0), None),
            "pmap {args:?} | head -1: {:?}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "pmap {args:?}");
    }
}

#[test]
fn other_write_errors_say_so_with_status_1() {
    let target = many_maps();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    for format in [&[][..], &["-x"], &["-X"]] {
        let mut args: Vec<String> = format.iter().map(|s| s.to_string()).collect();
        args.push(target.pid.to_string());
        let out = Command::new(ours())
            .args(&args)
            .stdout(full.try_clone().expect("dup /dev/full"))
            .output()
            .expect("pmap runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "pmap {args:?} > /dev/full: {stderr}"
        );
        assert_eq!(
            stderr, "pmap: write error: No space left on device\n",
            "pmap {args:?} > /dev/full"
        );
    }
}

/// A file whose path is about 1,500 bytes (a name is at most 255 bytes,
/// so the length is in its directories), mapped by a stopped process.
#[test]
fn names_longer_than_950_bytes_are_shown_whole() {
    let reference = reference();
    let dir = TempDir::new("longname");
    let mut path = dir.0.clone();
    for i in 0..6 {
        path.push(format!("{i}{}", "d".repeat(240)));
    }
    std::fs::create_dir_all(&path).expect("deep directories");
    path.push(format!("file-{}.bin", "f".repeat(200)));
    std::fs::write(&path, vec![7u8; 8192]).expect("the file");
    let full = path.to_str().expect("utf-8 path").to_string();
    assert!(full.len() > 1400, "{}", full.len());
    let script = "import mmap, sys, time\n\
                  f = open(sys.argv[1], 'rb')\n\
                  m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n\
                  print('ready', flush=True)\n\
                  time.sleep(1e6)\n";
    let mut cmd = Command::new(pmap_tests::program("python3", "python3"));
    cmd.args(["-c", script]).arg(&full);
    let p = Stopped::start(cmd);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", p.pid)).expect("maps");
    let regions = maps.lines().count();
    assert!(maps.contains(&full), "the kernel shows the whole path");

    for format in [&["-p"][..], &["-x", "-p"], &["-d", "-p"]] {
        let mut args: Vec<OsString> = os(format);
        args.push(p.pid.to_string().into());
        let out = run(&ours(), &args, &Env::default());
        assert_eq!(
            (out.status, out.stderr.as_slice()),
            (0, &b""[..]),
            "{format:?}"
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.len() > 17 && l.as_bytes()[16] == b' ')
            .filter(|l| l[..16].bytes().all(|c| c.is_ascii_hexdigit()))
            .collect();
        // One row per region: no piece of a name printed as a row of its own.
        assert_eq!(rows.len(), regions, "{format:?}:\n{text}");
        assert!(
            rows.iter().any(|r| r.ends_with(&format!(" {full}"))),
            "{format:?}: no row with the whole {}-byte path:\n{text}",
            full.len()
        );
    }
    // -X: procps-ng and ours both cut the name at 127 bytes.
    let args = vec![
        OsString::from("-X"),
        OsString::from("-p"),
        p.pid.to_string().into(),
    ];
    let (theirs, mine) = (
        run(&reference, &args, &Env::default()),
        run(&ours(), &args, &Env::default()),
    );
    let name_of = |stdout: &[u8]| -> Vec<u8> {
        lines(stdout)
            .into_iter()
            .filter(|l| !common::layout::is_pid_line(l))
            .find(|l| l.windows(5).any(|w| w == b"/0ddd"))
            .and_then(|l| l.split(|&c| c == b' ').next_back().map(<[u8]>::to_vec))
            .unwrap_or_else(|| panic!("no row of the file in {}", String::from_utf8_lossy(stdout)))
    };
    assert_eq!(
        String::from_utf8_lossy(&name_of(&mine.stdout)),
        String::from_utf8_lossy(&name_of(&theirs.stdout)),
        "-X -p: the name as {REFERENCE} cuts it"
    );
    assert!(name_of(&mine.stdout).len() <= 127);
}
