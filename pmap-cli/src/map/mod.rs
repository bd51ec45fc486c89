//! Pure data about an address space: no reads, no printing, no imports of
//! the rest of the crate (the layout's rules: docs/architecture.md).
//!
//! - `region`: one region, as a line of `/proc/PID/maps` describes it.
//! - `kind`: the one classifier of what a region is (heap, stack, arena,
//!   JIT, guard, shared memory...).
//! - `smaps`: one region of `/proc/PID/smaps` with its fields.
//! - `process`: the header facts of a process.
//! - `core`: a process as its ELF core file records it.
//! - `summary`: the rows of `--summary`, from the classifier.
//! - `model`: the live region model of one traced process.
//! - `ranges`: a merged set of address ranges.
//! - `page_runs`: a region's pages in runs of one page size (`pmap -s`).
//! - `solaris`: the tables of Solaris pmap's options, with their totals.
pub mod core;
pub(crate) mod kind;
pub mod model;
pub(crate) mod page_runs;
pub mod process;
pub(crate) mod ranges;
pub mod region;
pub mod smaps;
pub(crate) mod solaris;
pub(crate) mod summary;
