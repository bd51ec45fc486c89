//! The recording reader (`pmap replay`): any bytes, a damaged or cut
//! recording included, read to a record list that ends cleanly or with a
//! reason, never a crash; seeking to a moment and rebuilding the map there
//! either works or says why.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmap_cli::cmd::{replay::at::world_at, trace::record::reader::Recording};

fuzz_target!(|data: &[u8]| {
    let Ok(rec) = Recording::from_bytes(data.to_vec()) else {
        return;
    };
    let mut last = rec.header.start_ns;
    let mut stopped = false;
    for r in rec.records() {
        assert!(!stopped, "a record after the reader stopped");
        match r {
            Ok(r) => last = last.max(r.time().unwrap_or(0)),
            Err(_) => stopped = true,
        }
    }
    // The start, the middle, the last record's time, and past it.
    let start = rec.header.start_ns;
    for t in [start, start / 2 + last / 2, last, last.saturating_add(1)] {
        let _ = world_at(&rec, t);
    }
});
