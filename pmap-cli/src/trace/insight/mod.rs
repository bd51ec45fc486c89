//! Answers for people debugging JIT compilers and allocators (issue 6):
//! who made each region, W^X flips, churn, allocator structures.
//!
//! The event loop feeds every delta here; what comes back is printed under
//! the delta (notes) and after the tracer's summary. Owned by the insight
//! work; the loop only calls the methods below.

use std::io::{self, Write};

use serde_json::Value;

use super::{model::RegionModel, session::Delta};

/// Options from the command line that concern the insight features.
#[derive(Clone, Debug, Default)]
pub struct InsightOptions {
    /// User stacks were captured in the kernel (`--stacks`).
    pub stacks: bool,
    /// Frames to show under each delta (`--stack-depth`).
    pub stack_depth: usize,
    /// Provenance columns after tables (`--provenance`).
    pub provenance: bool,
    /// Write a self-contained HTML report here at the end (`--report`).
    pub report: Option<std::path::PathBuf>,
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

    /// Looks at one delta (the model already includes it); returns lines
    /// to print under it.
    pub fn observe(&mut self, _d: &Delta, _model: &RegionModel) -> Vec<String> {
        Vec::new()
    }

    /// Lines to print after a table of process `pid` (outside its frame,
    /// which holds exactly what `pmap` prints).
    pub fn after_table(&self, _pid: u32, _model: &RegionModel) -> Vec<String> {
        Vec::new()
    }

    /// Called once at the end (e.g. to write the report).
    pub fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
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
