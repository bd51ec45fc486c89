//! Helpers shared by the fuzz targets in `src/bin/` (one file per target;
//! see ../README.md).

use pmap_cli::map::{model::Change, region::Region};

/// Asserts that `change` turns the rows `before` into the rows `after`
/// exactly: what it removes was there and is gone, what it adds is new and
/// there, and nothing else differs.
pub fn assert_change_explains(before: &[Region], after: &[Region], change: &Change) {
    for r in &change.removed {
        assert!(
            before.contains(r) && !after.contains(r),
            "bad removal {r:?}"
        );
    }
    for r in &change.added {
        assert!(
            after.contains(r) && !before.contains(r),
            "bad addition {r:?}"
        );
    }
    for r in before {
        assert!(
            after.contains(r) || change.removed.contains(r),
            "lost silently {r:?}"
        );
    }
    for r in after {
        assert!(
            before.contains(r) || change.added.contains(r),
            "appeared silently {r:?}"
        );
    }
}
