//! The workload processes: started, told to go, and waited for while stopped.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

/// A program that prints `ready PID` and waits for a line on stdin.
pub(crate) struct Waiting {
    pub(crate) child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    pub(crate) pid: u32,
}

impl Waiting {
    pub(crate) fn spawn(cmd: &mut Command) -> Waiting {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let stdin = child.stdin.take().expect("stdin piped");
        let mut out = BufReader::new(child.stdout.take().expect("stdout piped"));
        let mut ready = String::new();
        out.read_line(&mut ready).expect("reading the workload");
        let pid = ready
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("the workload said {ready:?}, not `ready PID`"));
        Waiting {
            child,
            stdin,
            out,
            pid,
        }
    }

    pub(crate) fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("writing to the workload");
        self.stdin.flush().expect("writing to the workload");
    }

    pub(crate) fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).expect("reading the workload");
        l.trim().to_string()
    }
}

pub(crate) fn python() -> Command {
    let mut c = Command::new("python3");
    c.arg("-u").arg("-c");
    c
}

/// Whether `pid` is stopped (state `T` in /proc/PID/stat).
fn stopped(pid: u32) -> bool {
    pmap_tests::proc_state(pid) == Some('T')
}

pub(crate) fn wait_stopped(pids: &[u32]) {
    let start = Instant::now();
    while !pids.iter().all(|&p| stopped(p)) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "workers {pids:?} did not all stop within 30s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn cont(pids: &[u32]) {
    for &p in pids {
        // SAFETY: sends a signal to our own workload's workers.
        unsafe { libc::kill(p as i32, libc::SIGCONT) };
    }
}
