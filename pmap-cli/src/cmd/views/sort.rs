//! `--sort FIELD` for the table modes: the rows keep their columns and only
//! change order. Sizes sort largest first, names and addresses ascending;
//! ties keep address order.

use super::args::SortKey;
use crate::map::smaps::SmapsEntry;

fn field(e: &SmapsEntry, name: &str) -> u64 {
    e.field(name).unwrap_or(0)
}

/// The number a size-like key sorts by (largest first), or `None` for keys
/// that sort ascending.
pub fn entry_value(e: &SmapsEntry, key: SortKey) -> Option<u64> {
    Some(match key {
        SortKey::Size => e.region.size() / 1024,
        SortKey::Rss => field(e, "Rss"),
        SortKey::Pss => field(e, "Pss"),
        SortKey::PrivateDirty => field(e, "Private_Dirty"),
        SortKey::SharedDirty => field(e, "Shared_Dirty"),
        SortKey::Dirty => field(e, "Private_Dirty") + field(e, "Shared_Dirty"),
        SortKey::Swap => field(e, "Swap"),
        SortKey::Address | SortKey::Name | SortKey::Count => return None,
    })
}

pub fn sort_entries(entries: &mut [SmapsEntry], key: SortKey) {
    entries.sort_by_key(|e| e.region.start);
    match key {
        SortKey::Address | SortKey::Count => {}
        SortKey::Name => entries.sort_by(|a, b| a.region.name.cmp(&b.region.name)),
        _ => entries.sort_by_key(|e| std::cmp::Reverse(entry_value(e, key).unwrap_or(0))),
    }
}
