//! Our `pmap PID...` against procps-ng's `/usr/bin/pmap` (4.0.2 in Debian 12), byte for
//! byte (stdout, stderr, exit status), on real stopped processes, in every
//! mode. Where we print a corrected figure (README.md, "Compatibility with procps-ng"), the test
//! checks the figure itself and everything else byte for byte.
//!
//! Build the binary under test first: `cargo build -p pmap-cli`.

#[path = "../common/mod.rs"]
mod common;
mod compare;
mod modes;
mod targets;
mod totals;

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

use common::{layout::Verdict, *};
use compare::{expected, ours, retry, same, same_env, smaps_columns, verdict};
use modes::{FORMATS, all_modes, kernel_names, several_smaps_tables};
use targets::{odd_maps, regions, sleeper, with_pid};

#[test]
fn sleeping_process_every_mode() {
    let reference = reference();
    let s = sleeper();
    all_modes(&reference, s.pid);
    kernel_names(&reference, s.pid);
}

#[test]
fn odd_names_every_mode() {
    let reference = reference();
    let dir = TempDir::new("odd");
    let p = odd_maps(&dir.0, &[]);
    // The names the test is about are really there.
    let out = run(&reference, &with_pid(&[], &[p.pid]), &Env::default());
    for want in [
        &b"  [ shmid=0x"[..],
        b"memfd:pmap-test (deleted)",
        b"deleted file.bin (deleted)",
        b"new\\012line.bin",
        b"not-utf8-??.bin",
        b"tab?here.bin",
        b"with space.bin",
        b"trailing space \n",
        b"zero (deleted)",
        b"  [ stack ]",
    ] {
        assert!(
            find(&out.stdout, want).is_some(),
            "reference output lacks {:?}",
            String::from_utf8_lossy(want)
        );
    }
    all_modes(&reference, p.pid);
    kernel_names(&reference, p.pid);
    // Names in a UTF-8 and in the C locale (only the header escaping
    // depends on it, and the names must not).
    for lc in ["C", "C.UTF-8"] {
        for f in FORMATS {
            same_env(
                &reference,
                &with_pid(f, &[p.pid]),
                &Env::default().var("LC_ALL", lc),
            );
        }
    }
}

#[test]
fn python_file_and_anonymous_mappings_and_odd_arguments() {
    let reference = reference();
    let script = "import mmap,sys,time\n\
                  f=open('/etc/passwd','rb')\n\
                  m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ)\n\
                  a=mmap.mmap(-1,1<<20)\n\
                  a[0]=1\n\
                  print('ready',flush=True)\n\
                  time.sleep(1e6)\n";
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script);
    // Arguments whose bytes the header must escape: blank, tab, newline,
    // invalid UTF-8, valid UTF-8, DEL.
    for a in [
        &b"with space"[..],
        b"tab\there",
        b"new\nline",
        b"\xff\xfe",
        "caf\u{e9}".as_bytes(),
        b"del\x7f",
    ] {
        cmd.arg(to_os(a));
    }
    let p = Stopped::start(cmd);
    for lc in ["C", "C.UTF-8", "POSIX", "xx_XX.UTF-8"] {
        let env = Env::default().var("LC_ALL", lc);
        for f in FORMATS {
            same_env(&reference, &with_pid(f, &[p.pid]), &env);
        }
    }
    all_modes(&reference, p.pid);
}

#[test]
fn many_threads_and_thread_ids() {
    let reference = reference();
    let dir = TempDir::new("threads");
    let p = odd_maps(&dir.0, &["--threads", "64"]);
    let tids: Vec<u32> = std::fs::read_dir(format!("/proc/{}/task", p.pid))
        .expect("task dir")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    assert!(tids.len() > 64);
    let some: Vec<u32> = tids
        .iter()
        .copied()
        .filter(|&t| t != p.pid)
        .take(3)
        .collect();
    for f in FORMATS {
        if *f == ["-X"] || *f == ["-XX"] {
            several_smaps_tables(&reference, &with_pid(f, &some));
        } else {
            same(&reference, &with_pid(f, &some));
        }
        same(&reference, &with_pid(&[*f, &["-q"]].concat(), &[p.pid]));
    }
}

#[test]
fn sixty_thousand_mappings() {
    let reference = reference();
    let dir = TempDir::new("many");
    let p = odd_maps(&dir.0, &["--maps", "60000"]);
    assert!(regions(p.pid).len() > 60_000);
    for f in [&[][..], &["-x"], &["-X"], &["-d"], &["-q", "-XX"], &["-XX"]] {
        same(&reference, &with_pid(f, &[p.pid]));
    }
}

#[test]
fn kernel_threads_zombies_missing_and_several_pids() {
    let reference = reference();
    let s = sleeper();
    // A zombie: a child that exited and was never reaped.
    let mut cmd = Command::new("python3");
    cmd.args(["-c", "import os,time\nif os.fork()==0: os._exit(0)\nprint('ready',flush=True)\ntime.sleep(1e6)\n"]);
    let z = Stopped::start(cmd);
    let zombie = (0..1000)
        .find_map(|_| {
            let kids = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", z.pid))
                .unwrap_or_default();
            let found = kids
                .split_whitespace()
                .filter_map(|k| k.parse::<u32>().ok())
                .find(|&k| pmap_tests::proc_state(k) == Some('Z'));
            if found.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            found
        })
        .expect("a zombie appears");
    let missing = 0x7fff_fff0u32;
    let kthread = pmap_tests::kernel_thread();
    for f in FORMATS {
        for pids in [
            vec![kthread],
            vec![zombie],
            vec![missing],
            vec![s.pid, kthread, missing, s.pid],
            vec![kthread, s.pid],
            vec![zombie, s.pid, zombie],
        ] {
            for q in [&[][..], &["-q"]] {
                let args = with_pid(&[*f, q].concat(), &pids);
                let smaps_table = *f == ["-X"] || *f == ["-XX"];
                if smaps_table && (pids.len() > 1 || q.is_empty()) {
                    several_smaps_tables(&reference, &args);
                } else {
                    same(&reference, &args);
                }
            }
        }
    }
    // PID spellings.
    for arg in [
        format!("0x{:x}", s.pid),
        format!("0{:o}", s.pid),
        format!("/proc/{}", s.pid),
        format!("0X{:X}", s.pid),
    ] {
        same(&reference, &os(&["-q", &arg]));
        same(&reference, &os(&["-d", &arg, "/proc/self"]));
    }
}

#[test]
fn unreadable_maps() {
    let reference = reference();
    let s = sleeper();
    // An unprivileged user may not read root's maps. Our binary is copied
    // where that user can run it.
    let dir = TempDir::new("unreadable");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let bin = dir.0.join("pmap");
    std::fs::copy(ours(), &bin).expect("copying pmap");
    let nobody = Env {
        uid: Some(65534),
        ..Env::default()
    };
    for f in FORMATS {
        for pids in [vec![s.pid], vec![s.pid, 0x7fff_fff0, s.pid]] {
            let args = with_pid(f, &pids);
            let expected = usage_and_version(run(&reference, &args, &nobody));
            assert_ne!(expected.status, 0, "nobody should not read root's maps");
            let mine = run(&bin, &args, &nobody);
            if let Err(e) = check(&args, &expected, &mine) {
                panic!("{e}");
            }
        }
    }
}

#[test]
fn command_line_handling() {
    let reference = reference();
    let s = sleeper();
    let pid = s.pid.to_string();
    let p = pid.as_str();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["-h"],
        vec!["--help"],
        vec!["--he"],
        vec!["-V"],
        vec!["--version"],
        vec!["-V", "-Z"],
        vec!["-Z", p],
        vec!["-xZ", p],
        vec!["-:", p],
        vec!["--foo", p],
        vec!["--foo=bar", p],
        vec!["--r", p],
        vec!["--re=1", p],
        vec!["--create", p],
        vec!["--extended=1", p],
        vec!["--range"],
        vec!["-A"],
        vec!["-qA"],
        vec!["--range", p],
        vec!["--range=", p],
        vec!["-A", "zz", p],
        vec!["-A", "1,2,3", p],
        vec!["-A", "0x1g", p],
        vec!["-A", "-1", p],
        vec!["-A", "", p],
        vec!["-x", "-d", p],
        vec!["-x", "-X", p],
        vec!["-X", "-c", p],
        vec!["-d", "-C", "/nonexistent", p],
        vec!["-n", "-N", "/tmp/x"],
        vec!["-n", "-q"],
        vec!["-N", "/tmp/x", "-p"],
        vec!["-n", p],
        vec!["-N"],
        vec!["-q"],
        vec!["-x"],
        vec![p, "-q"],
        vec!["-q", "--", p],
        vec!["--qu", "--dev", p],
        vec!["-qd", p],
        vec!["-XXX", "-q", p],
        vec!["--show-path", "--quiet", p],
        vec!["0"],
        vec!["-q", "0"],
        vec!["-q", "2147483648"],
        vec!["-q", "2147483647"],
        vec!["-q", "99999999999999999999999999"],
        vec!["-q", "1x"],
        vec!["-q", "+1"],
        vec!["-q", "-1"],
        vec!["-q", "abc"],
        vec!["-q", "08"],
        vec!["-q", "0x"],
        vec!["-q", "/proc/self"],
        vec!["-q", "/proc/"],
        vec!["-q", "/proc/abc", p],
        vec!["-q", "/proc/1x", p],
        vec!["-q", p, "abc"],
        vec!["-q", p, ""],
        vec!["-q", "-"],
        vec!["-c", "-C"],
        vec!["-A", "7f0000000000,ffffffffffffffff", "-q", p],
    ];
    for c in &cases {
        same(&reference, &os(c));
    }
    // More than 255 PIDs: procps-ng gives up (README.md, "Compatibility with procps-ng"), we
    // show them all.
    let many: Vec<u32> = vec![s.pid; 300];
    let args = with_pid(&["-q"], &many);
    let theirs = run(&reference, &args, &Env::default());
    let mine = run(&ours(), &args, &Env::default());
    // procps-ng 4.0.2 gives up; a release that does not must print ours.
    if theirs.status == 1 {
        assert_eq!(
            theirs.stderr.as_slice(),
            &b"pmap: library failed pids statistics\n"[..]
        );
    } else {
        assert_eq!(usage_and_version(theirs), mine, "300 pids");
    }
    assert_eq!((mine.status, mine.stderr.as_slice()), (0, &b""[..]));
    let header = format!("{}:   sleep 100000\n", s.pid);
    let one = run(&ours(), &with_pid(&["-q"], &[s.pid]), &Env::default()).stdout;
    assert_eq!(mine.stdout, one.repeat(300));
    assert!(one.starts_with(header.as_bytes()));
    // Without POSIXLY_CORRECT operands and options mix; with it, the first
    // operand ends the options.
    same_env(
        &reference,
        &os(&[p, "-x"]),
        &Env::default().var("POSIXLY_CORRECT", "1"),
    );
    same_env(
        &reference,
        &os(&["-q", p, "-x"]),
        &Env::default().var("POSIXLY_CORRECT", "1"),
    );
}

/// rc files: creating (`-n`, `-N`), refusing to overwrite, reading (`-c`,
/// `-C`), sections, warnings, ShowPath toggling `-p`.
#[test]
fn rc_files() {
    let reference = reference();
    let s = sleeper();
    let pid = s.pid.to_string();
    let p = pid.as_str();
    let tmp = TempDir::new("rc");
    let (ref_home, our_home) = (tmp.0.join("ref"), tmp.0.join("ours"));
    for h in [&ref_home, &our_home] {
        std::fs::create_dir_all(h).expect("home dir");
    }
    let ours = ours();
    // Each side gets its own HOME, so that -n writes two files to compare.
    let both = |args: &[&str], setup: &dyn Fn(&Path)| {
        let args = os(args);
        retry(&args, &mut || {
            for h in [&ref_home, &our_home] {
                setup(h);
            }
            let our_env = Env::default().var("HOME", &our_home);
            let names = smaps_columns(&args, &our_env);
            let theirs = run(&reference, &args, &Env::default().var("HOME", &ref_home));
            let mine = run(&ours, &args, &our_env);
            let v = verdict(
                &args,
                &theirs,
                &expected(theirs.clone()),
                &mine,
                names.as_deref(),
            );
            if v == Verdict::Same {
                let (a, b) = (
                    std::fs::read(ref_home.join(".pmaprc")).ok(),
                    std::fs::read(our_home.join(".pmaprc")).ok(),
                );
                assert_eq!(a, b, "~/.pmaprc after {args:?}");
            }
            v
        });
    };
    let clear = |h: &Path| {
        let _ = std::fs::remove_file(h.join(".pmaprc"));
    };
    let write = |text: &'static str| {
        move |h: &Path| std::fs::write(h.join(".pmaprc"), text).expect("writing rc")
    };

    both(&["-n"], &clear);
    // Second time: refuses to overwrite.
    both(&["-n"], &|_: &Path| {});
    both(&["-c", p], &|_: &Path| {});
    both(&["-c", "-q", p], &|_: &Path| {});
    both(&["-c", p], &clear);
    both(&["-n"], &|h: &Path| {
        clear(h);
        std::fs::create_dir_all(h.join(".pmaprc")).expect("dir in the way");
    });
    both(&["-c", p], &|h: &Path| {
        let _ = std::fs::remove_dir(h.join(".pmaprc"));
    });
    let rcs: &[&'static str] = &[
        "[Fields Display]\nRss\nSize\nPss\nMapping\n",
        "[Fields Display]\nPerm\nOffset\nDevice\nInode\nSize\nRss\nPss\nShared_Clean\nShared_Dirty\nPrivate_Clean\nPrivate_Dirty\nReferenced\nAnonymous\nAnonHugePages\nSwap\nKernelPageSize\nMMUPageSize\nLocked\nVmFlags\nMapping\n[Mapping]\nShowPath\n",
        "[Fields Display]\nSize\nVmFlags\n",
        "[Fields Display]\n",
        "",
        "stray line\n[Fields Display] Rss\n  Size # ok\nPss junk\n[Unknown]\nRss\n[broken\n[Mapping]ShowPath\nShowPath\nShowPath\n\t# comment\n",
        "[Mapping]\nShowPath\n[Fields Display]\nRss\nMapping\n",
    ];
    for rc in rcs {
        for extra in [&[][..], &["-p"], &["-q"]] {
            let args = [&["-c"][..], extra, &[p]].concat();
            both(&args, &write(rc));
        }
    }
    // -C FILE and -N FILE, with paths both can use.
    let rc_path = tmp.0.join("custom rc");
    std::fs::write(&rc_path, rcs[0]).expect("writing rc");
    let rc_str = rc_path.to_str().expect("utf-8 temp path");
    same(&reference, &os(&["-C", rc_str, p]));
    same(&reference, &os(&["--read-rc-from", rc_str, "-q", p]));
    same(&reference, &os(&["-C", "/nonexistent/rc", p]));
    same(&reference, &os(&["-C", rc_str]));
    // -N: refuses an existing file or a directory, fails on a bad path,
    // writes the template.
    same(&reference, &os(&["-N", rc_str]));
    same(&reference, &os(&["-N", tmp.0.to_str().expect("utf-8")]));
    same(&reference, &os(&["-N", "/nonexistent/dir/rc"]));
    for (bin, name) in [(&reference, "ref-new"), (&ours, "our-new")] {
        let target = tmp.0.join(name);
        let args = os(&["--create-rc-to", target.to_str().expect("utf-8")]);
        let out = usage_and_version(run(bin, &args, &Env::default()));
        assert_eq!(out.status, 0);
        assert_eq!(
            out.stderr,
            b"pmap: rc file successfully created, feel free to edit the content\n"
        );
    }
    assert_eq!(
        std::fs::read(tmp.0.join("ref-new")).expect("procps wrote its rc"),
        std::fs::read(tmp.0.join("our-new")).expect("we wrote ours"),
    );
    // No HOME.
    same_env(&reference, &os(&["-n"]), &Env::default().unset("HOME"));
    same_env(&reference, &os(&["-c", p]), &Env::default().unset("HOME"));
}
