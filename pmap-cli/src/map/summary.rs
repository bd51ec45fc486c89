//! The rows of `--summary`: a process's regions grouped by
//! [`kind::category`], counted, and their sizes summed. Pure data, for
//! every command that summarises a map.

use std::collections::HashMap;

use super::kind::{self, Roles};
use super::smaps::SmapsEntry;

/// One category of `--summary`: its regions counted and their sizes
/// summed (KiB).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    pub category: String,
    pub count: u64,
    pub size: u64,
    pub rss: u64,
    pub pss: u64,
    pub private_dirty: u64,
    pub shared_dirty: u64,
    pub swap: u64,
    /// Lowest start address among the category's regions.
    pub first: u64,
}

impl Row {
    fn add(&mut self, o: &Row) {
        self.count += o.count;
        self.size += o.size;
        self.rss += o.rss;
        self.pss += o.pss;
        self.private_dirty += o.private_dirty;
        self.shared_dirty += o.shared_dirty;
        self.swap += o.swap;
        self.first = self.first.min(o.first);
    }
}

/// Groups a process's regions into categories (unsorted).
pub fn summarize(entries: &[SmapsEntry], roles: &Roles) -> Vec<Row> {
    let code_files = kind::code_files(entries.iter().map(|e| &e.region));
    let mut rows: HashMap<String, Row> = HashMap::new();
    for e in entries {
        let f = |n: &str| e.field(n).unwrap_or(0);
        let cat =
            kind::category(&e.region, roles.get(&e.region.start).copied(), &code_files).to_string();
        let one = Row {
            category: String::new(),
            count: 1,
            size: e.region.size() / 1024,
            rss: f("Rss"),
            pss: f("Pss"),
            private_dirty: f("Private_Dirty"),
            shared_dirty: f("Shared_Dirty"),
            swap: f("Swap"),
            first: e.region.start,
        };
        rows.entry(cat.clone())
            .or_insert_with(|| Row {
                category: cat,
                first: u64::MAX,
                ..Row::default()
            })
            .add(&one);
    }
    let mut out: Vec<Row> = rows.into_values().collect();
    out.sort_by(|a, b| a.category.cmp(&b.category));
    out
}

/// The sum of all rows.
pub fn total(rows: &[Row]) -> Row {
    let mut t = Row {
        category: "total".into(),
        first: u64::MAX,
        ..Row::default()
    };
    for r in rows {
        t.add(r);
    }
    t
}
