//! Lines read from a child's pipe by a thread, as they arrive, with waits
//! on what has come so far.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Lines read from one pipe, as they arrive.
#[derive(Default)]
pub(super) struct Lines {
    pub(super) lines: Mutex<(Vec<String>, bool)>,
    cv: Condvar,
}

impl Lines {
    pub(super) fn reader(src: impl Read + Send + 'static) -> Arc<Lines> {
        let lines = Arc::new(Lines::default());
        let l = Arc::clone(&lines);
        std::thread::spawn(move || {
            let mut r = BufReader::new(src);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if buf.last() == Some(&b'\n') {
                            buf.pop();
                        }
                        let s = String::from_utf8_lossy(&buf).into_owned();
                        l.lines.lock().expect("lines lock").0.push(s);
                        l.cv.notify_all();
                    }
                }
            }
            l.lines.lock().expect("lines lock").1 = true;
            l.cv.notify_all();
        });
        lines
    }

    pub(super) fn snapshot(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").0.clone()
    }

    pub(super) fn len(&self) -> usize {
        self.lines.lock().expect("lines lock").0.len()
    }

    pub(super) fn eof(&self) -> bool {
        self.lines.lock().expect("lines lock").1
    }

    /// Waits until `f(lines)` returns Some, the pipe closes, or the timeout.
    pub(super) fn wait<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&[String]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut g = self.lines.lock().expect("lines lock");
        loop {
            if let Some(v) = f(&g.0) {
                return Some(v);
            }
            let now = Instant::now();
            if g.1 || now >= deadline {
                return None;
            }
            g = self
                .cv
                .wait_timeout(g, deadline - now)
                .expect("lines lock")
                .0;
        }
    }

    pub(super) fn wait_eof(&self, timeout: Duration) -> bool {
        self.wait(timeout, |_| None::<()>);
        self.eof()
    }
}
