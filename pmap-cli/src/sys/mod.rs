//! Thin wrappers over what the operating system offers any layer, with no
//! knowledge of our data: it imports nothing of ours, and anything may
//! import it (docs/architecture.md).
//!
//! - `spread`: keeping two threads that work together on different CPUs
//!   (the map reader and its parser; the two halves of a table's printing).
//! - `bytes`: byte search that never asks the CPU for its features (a
//!   trapped `cpuid` per question under a hypervisor).
//! - `huge_pages`: a buffer for megabytes of held text, in memory the
//!   kernel may back with 2 MiB pages (one page fault where 512 were).
pub(crate) mod bytes;
pub(crate) mod huge_pages;
pub(crate) mod spread;
