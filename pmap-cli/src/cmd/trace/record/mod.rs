//! Recordings of `pmap trace` (`--record FILE`), read by `pmap replay`.
//! The layout is documented in docs/recording.md.
//!
//! - `wire`: varints, frames (length + CRC-32), the file header.
//! - `format`: the records, and the world they add up to.
//! - `codec`: records to bytes and back; `delta`: a delta's bytes.
//! - `state`: what both sides keep between records; rows and tables.
//! - `notes`: what insight printed (named stacks, notes, summary
//!   sections), interned.
//! - `stats`: a summary's counts.
//! - `writer`: the recorder the tracer feeds.
//! - `reader`: reading a recording back, up to any damage; seeking.
pub mod codec;
mod delta;
pub mod format;
pub mod notes;
pub mod reader;
pub mod state;
pub mod stats;
pub mod wire;
pub mod writer;

#[cfg(test)]
mod tests;
