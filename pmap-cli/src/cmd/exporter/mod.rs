//! `pmap exporter`: a Prometheus exporter of processes' memory maps.
//!
//! - `args`: the command line.
//! - `kernel`: the eBPF counting programs (pmap-ebpf's `counters`).
//! - `collect`: one collection: /proc gauges, kernel counters, the top N.
//! - `metrics`: a collection in the Prometheus text format.
//! - `http`: the minimal HTTP server Prometheus scrapes.
pub mod args;
pub mod collect;
pub mod http;
pub mod kernel;
pub mod metrics;

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use args::{Backend, ExporterArgs};
use collect::Collector;
use kernel::Counters;

pub fn main(args: Vec<OsString>) -> ExitCode {
    // argv[0] is "pmap", argv[1] is "exporter".
    let parsed = match ExporterArgs::try_parse_from(args.into_iter().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pmap exporter: starting the event loop failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(parsed)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pmap exporter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the counters as `backend` asks; `None` means polling, said on
/// stderr with the reason and what is not served.
fn counters(backend: Backend) -> Result<Option<Counters>> {
    if backend == Backend::Poll {
        eprintln!(
            "pmap exporter: --backend poll: serving the /proc gauges only; not served: {}",
            metrics::KERNEL_ONLY.join(", ")
        );
        return Ok(None);
    }
    match Counters::load() {
        Ok(c) => {
            eprintln!(
                "pmap exporter: counting with eBPF at {} tracepoints",
                c.attached.len()
            );
            Ok(Some(c))
        }
        Err(e) if backend == Backend::Auto => {
            eprintln!(
                "pmap exporter: eBPF counters unavailable ({e:#}); polling /proc instead; not served: {}",
                metrics::KERNEL_ONLY.join(", ")
            );
            Ok(None)
        }
        Err(e) => Err(e.context("--backend ebpf")),
    }
}

/// Hands the heap a collection freed back to the kernel. Reading the
/// `smaps` of a process with 60,000 regions takes tens of MiB for a moment;
/// glibc would keep them for the rest of a long-running exporter's life.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it
    // has no preconditions and touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn run(a: ExporterArgs) -> Result<()> {
    let mut term = signal(SignalKind::terminate()).context("watching for SIGTERM failed")?;
    let mut int = signal(SignalKind::interrupt()).context("watching for SIGINT failed")?;
    let listener = TcpListener::bind(a.listen).await.with_context(|| {
        format!(
            "listening on {} failed (another exporter on this port? choose another with --listen)",
            a.listen
        )
    })?;
    let kernel = counters(a.backend)?;
    let backend = metrics::Backend {
        name: if kernel.is_some() { "ebpf" } else { "poll" },
    };
    let selection = a.selection().map_err(anyhow::Error::msg)?;
    let mut collector = Collector::new(selection, a.top);
    let min_gap = Duration::from_secs_f64(a.interval);
    let mut cached: Option<(Instant, String)> = None;
    eprintln!(
        "pmap exporter: serving http://{}/metrics",
        listener.local_addr().unwrap_or(a.listen)
    );
    loop {
        let mut stream = tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            conn = listener.accept() => match conn {
                Ok((s, _)) => s,
                // Out of file descriptors and the like: try the next one.
                Err(e) => {
                    eprintln!("pmap exporter: accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        match http::read_request(&mut stream).await {
            Some(http::Request::Metrics) => {
                let fresh = cached
                    .as_ref()
                    .filter(|(at, _)| at.elapsed() < min_gap)
                    .map(|(_, body)| body.clone());
                let body = match fresh {
                    Some(b) => b,
                    None => {
                        let start = Instant::now();
                        let c = collector.collect(kernel.as_ref());
                        let body = metrics::render(&c, &backend, start.elapsed().as_secs_f64());
                        drop(c);
                        release_freed_memory();
                        cached = Some((start, body.clone()));
                        body
                    }
                };
                http::respond(
                    &mut stream,
                    "200 OK",
                    metrics::CONTENT_TYPE,
                    body.as_bytes(),
                )
                .await;
            }
            Some(http::Request::Other(status, body)) => {
                http::respond(
                    &mut stream,
                    status,
                    "text/plain; charset=utf-8",
                    body.as_bytes(),
                )
                .await;
            }
            None => {}
        }
    }
    // Dropping the counters detaches every program and frees the maps.
    drop(kernel);
    eprintln!("pmap exporter: stopped");
    Ok(())
}
