//! pmap: a process's memory map (procps-ng compatible snapshots) and a live,
//! eBPF-fed view of how it changes (`pmap trace`).
//!
//! - `source`: the only readers of `/proc`, core files and perf maps.
//! - `map`: pure data: the region type, the region model, range sets, and
//!   the classifier of what a region is.
//! - `format`: printers; they only format what they are given.
//! - `snapshot`: the procps-compatible command line and its driver.
//! - `trace`: `pmap trace`: probes, events, the live region model, deltas.
pub mod cli;
pub mod cmd;
pub mod map;
pub mod render;
pub mod source;
pub mod trace;
