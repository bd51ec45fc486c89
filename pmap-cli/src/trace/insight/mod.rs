//! Answers for people debugging JIT compilers and allocators (issue 6):
//! who made each region, W^X flips, churn, allocator structures.
//!
//! The event loop feeds every delta here; what comes back is printed under
//! the delta (notes) and after the tracer's summary. Owned by the insight
//! work; the loop only calls the methods below.

use std::io::{self, Write};

use serde_json::Value;

use super::session::Delta;

/// Options from the command line that concern the insight features.
#[derive(Clone, Debug, Default)]
pub struct InsightOptions {
    /// User stacks were captured in the kernel (`--stacks`).
    pub stacks: bool,
    /// Frames to show under each delta (`--stack-depth`).
    pub stack_depth: usize,
    /// Provenance columns after tables (`--provenance`).
    pub provenance: bool,
}

/// State kept across the trace. Nothing yet: each analysis adds its own.
#[derive(Debug, Default)]
pub struct Insight {
    #[expect(dead_code, reason = "read by the analyses as they are added")]
    opts: InsightOptions,
}

impl Insight {
    pub fn new(opts: InsightOptions) -> Insight {
        Insight { opts }
    }

    /// Looks at one delta; returns lines to print under it.
    pub fn observe(&mut self, _d: &Delta) -> Vec<String> {
        Vec::new()
    }

    /// Writes the text summary sections for process `pid`.
    pub fn summary(&self, _pid: u32, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }

    /// The same as JSON, merged into the `summary` record under "insight".
    pub fn summary_json(&self, _pid: u32) -> Option<Value> {
        None
    }
}
