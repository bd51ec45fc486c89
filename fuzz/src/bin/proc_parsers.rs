//! The `/proc/PID/maps` and `/proc/PID/smaps` parsers: any bytes give
//! regions or errors, never a panic; what parses as a maps line keeps its
//! address order (start <= end).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmap_cli::source::{maps, smaps};

fuzz_target!(|data: &[u8]| {
    for r in maps::parse(data).flatten() {
        assert!(r.start <= r.end, "parsed an inverted region {r:?}");
    }
    if let Ok(entries) = smaps::parse(data) {
        for e in &entries {
            assert!(e.region.start <= e.region.end);
        }
    }
    for line in data.split(|&b| b == b'\n') {
        let _ = smaps::field_line(line);
        let _ = smaps::vmflags_line(line);
    }
});
