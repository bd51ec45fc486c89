//! pmap: a process's memory map (procps-ng compatible snapshots) and a live,
//! eBPF-fed view of how it changes (`pmap trace`).
//!
//! - `proc`: readers of the kernel's view (`/proc/PID/maps`, `smaps`, `PROCMAP_QUERY`).
//! - `region`: the region type every reader produces and every printer takes.
//! - `format`: printers; they only format what they are given.
//! - `snapshot`: the procps-compatible command line and its driver.
//! - `trace`: `pmap trace`: probes, events, the live region model, deltas.
//! - `exporter`: `pmap exporter`: Prometheus metrics of many processes.
//! - `record`: the recordings `pmap trace --record` writes.
//! - `replay`: `pmap replay`: a recording printed again, or the map at a moment.
//! - `diff`: `pmap diff A B`: two moments of a map compared.
pub mod cli;
pub mod core_file;
pub mod diff;
pub mod exporter;
pub mod format;
pub mod proc;
pub mod record;
pub mod region;
pub mod replay;
pub mod self_docs;
pub mod snapshot;
pub mod trace;
pub mod views;
