//! pmap: a process's memory map (procps-ng compatible snapshots) and a live,
//! eBPF-fed view of how it changes (`pmap trace`). The layout and its rules:
//! docs/architecture.md.
//!
//! - `map`: pure data: regions, the region model, range sets, and the one
//!   classifier of what a region is.
//! - `source`: the only readers of `/proc`, core files and perf maps.
//! - `render`: bytes from data: the procps tables, JSON, core files.
//! - `sys`: what the operating system offers any layer (CPU placement);
//!   imports nothing of ours.
//! - `cmd`: one module per command line (`pmap trace` is `cmd::trace`), and
//!   what they share.
//! - `exporter`: `pmap exporter`, Prometheus metrics (a command; to move
//!   under `cmd/`).
//! - `self_docs`: `pmap man`, `pmap completions`.
//! - `cli`: the whole command line described for clap (man pages,
//!   completions).
//!
//! Only what the binary, the fuzz targets and the examples use is public,
//! so that the compiler reports what nothing uses.
pub mod cli;
pub mod cmd;
pub mod map;
pub(crate) mod render;
pub mod self_docs;
pub mod source;
pub(crate) mod sys;
