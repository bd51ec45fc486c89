//! Printers: they only format what the readers produced.
pub mod json;
