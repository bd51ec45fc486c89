//! The event loop: the ring buffer, timers, signals and the terminal, until
//! something ends the trace.

use std::{io::Write, os::fd::RawFd, time::Duration};

use anyhow::Result;
use tokio::io::AsyncBufReadExt;

use super::{CONFIRM_GRACE_NS, DRAIN_MS, Tracer};
use crate::cmd::trace::{args::TraceArgs, launch::Launched};

/// Why the event loop stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    /// Every traced process exited.
    Exited,
    Duration,
    Signal(&'static str),
    /// The reader of the output went away (`| head`).
    OutputClosed,
}

impl End {
    /// Why a launched command is ended, for the message saying so.
    pub(super) fn why(self) -> &'static str {
        match self {
            End::Exited => "the trace ended",
            End::Duration => "--duration reached",
            End::Signal("SIGINT") => "interrupted (SIGINT)",
            End::Signal("SIGTERM") => "terminated (SIGTERM)",
            End::Signal("SIGHUP") => "hung up (SIGHUP)",
            End::Signal(_) => "stopped by a signal",
            End::OutputClosed => "the trace's output was closed",
        }
    }
}

/// Whether the reader of `fd` has gone away: a pipe or socket whose other
/// end is closed reports POLLERR or POLLHUP (a terminal that hung up,
/// POLLHUP). A regular file never does. Checked on a timer, so that a
/// trace whose target is idle (nothing to write, so no EPIPE) still ends
/// when its reader has.
pub(super) fn output_closed(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

pub(super) struct Signals<'a> {
    pub(super) usr1: &'a mut tokio::signal::unix::Signal,
    pub(super) int: &'a mut tokio::signal::unix::Signal,
    pub(super) term: &'a mut tokio::signal::unix::Signal,
    pub(super) hup: &'a mut tokio::signal::unix::Signal,
}

/// Streams deltas and prints tables on demand until something ends the
/// trace; says what.
pub(super) async fn event_loop<W: Write>(
    tracer: &mut Tracer<'_, W>,
    args: &TraceArgs,
    launched: &mut Option<Launched>,
    out_fd: Option<RawFd>,
    sig: Signals<'_>,
) -> Result<End> {
    let deadline = args
        .duration
        .map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s));
    let mut interval = args
        .interval
        .map(|s| tokio::time::interval(Duration::from_secs_f64(s)));
    if let Some(iv) = &mut interval {
        iv.tick().await; // the first tick is immediate
    }
    // Enter on a terminal prints the table (not in launch mode: the
    // command owns the terminal).
    // SAFETY: isatty has no preconditions.
    let tty = launched.is_none() && unsafe { libc::isatty(0) } == 1;
    let mut stdin = tty.then(|| tokio::io::BufReader::new(tokio::io::stdin()).lines());
    // Also how soon a closed output is noticed: well under the second
    // after which someone who typed `| head` wonders why it hangs.
    let mut liveness = tokio::time::interval(Duration::from_millis(200));
    let mut summary_tick = args
        .summary_interval
        .map(|s| tokio::time::interval(Duration::from_secs_f64(s)));
    if let Some(iv) = &mut summary_tick {
        iv.tick().await; // the first tick is immediate
    }
    // The kernel side wakes us only when the ring is a quarter full (a
    // wake-up per event costs the traced process dearly), so also drain it
    // on a short timer: this bounds the delay of a delta.
    let mut drain_tick = tracer.probes.is_some().then(|| {
        let mut t = tokio::time::interval(Duration::from_millis(DRAIN_MS));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    });
    let mut poll_tick = tracer
        .probes
        .is_none()
        .then(|| tokio::time::interval(Duration::from_secs_f64(args.poll_interval)));

    loop {
        tokio::select! {
            r = async { match &mut tracer.probes { Some(p) => p.readable().await, None => std::future::pending().await } } => {
                r?;
                tracer.pump()?;
                if tracer.done() {
                    return Ok(End::Exited);
                }
            }
            _ = async { match &mut drain_tick { Some(t) => { t.tick().await; } None => std::future::pending().await } } => {
                tracer.pump()?;
                if tracer.done() {
                    return Ok(End::Exited);
                }
            }
            _ = async { match &mut poll_tick { Some(t) => { t.tick().await; } None => std::future::pending().await } } => tracer.poll()?,
            _ = sig.usr1.recv() => tracer.tables("SIGUSR1")?,
            _ = async { match &mut summary_tick { Some(iv) => { iv.tick().await; } None => std::future::pending().await } } => tracer.interim_summary()?,
            _ = sig.int.recv() => return Ok(End::Signal("SIGINT")),
            _ = sig.term.recv() => return Ok(End::Signal("SIGTERM")),
            _ = sig.hup.recv() => return Ok(End::Signal("SIGHUP")),
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => return Ok(End::Duration),
            _ = async { match &mut interval { Some(iv) => { iv.tick().await; } None => std::future::pending().await } } => tracer.tables("interval")?,
            line = async { match &mut stdin { Some(l) => l.next_line().await, None => std::future::pending().await } } => {
                match line {
                    Ok(Some(_)) => tracer.tables("enter")?,
                    _ => stdin = None,
                }
            }
            _ = liveness.tick() => {
                if out_fd.is_some_and(output_closed) {
                    return Ok(End::OutputClosed);
                }
                tracer.expire(CONFIRM_GRACE_NS);
                if let Some(l) = launched.as_mut() {
                    l.reap();
                }
                if tracer.all_exited()? {
                    return Ok(End::Exited);
                }
            }
        }
    }
}
