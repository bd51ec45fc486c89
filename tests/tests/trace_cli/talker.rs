//! The programs the tests run, and `Talker`, a process driven through its stdin and stdout.

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use pmap_tests::trace_harness::find_elf;

pub(crate) fn program(name: &str) -> PathBuf {
    find_elf(name).unwrap_or_else(|| {
        panic!("{name} (an ELF executable) is not installed; these tests need it")
    })
}

pub(crate) fn python3() -> String {
    program("python3").to_string_lossy().into_owned()
}

/// A process the test starts and talks to: lines to its stdin, lines from
/// its stdout (read by a thread, as they come). Killed on drop.
pub(crate) struct Talker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Talker {
    pub(crate) fn spawn(cmd: &mut Command) -> Talker {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("stdout piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Talker {
            child,
            stdin,
            lines,
        }
    }

    pub(crate) fn python(script: &str) -> Talker {
        Talker::spawn(Command::new(python3()).args(["-u", "-c", script]))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line it prints.
    pub(crate) fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("process {} printed no line: {e}", self.pid()))
    }

    pub(crate) fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("writing to the process");
        stdin.flush().expect("flushing to the process");
    }

    /// Waits for it to exit.
    pub(crate) fn wait(&mut self) {
        self.stdin = None;
        let st = self.child.wait().expect("waiting for the process");
        assert!(st.success(), "process {} ended with {st}", self.pid());
    }
}

impl Drop for Talker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
