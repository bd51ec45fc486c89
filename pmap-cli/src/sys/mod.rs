//! Thin wrappers over what the operating system offers any layer, with no
//! knowledge of our data: it imports nothing of ours, and anything may
//! import it (docs/architecture.md).
//!
//! - `spread`: keeping two threads that work together on different CPUs
//!   (the map reader and its parser; the two halves of a table's printing).
pub(crate) mod spread;
