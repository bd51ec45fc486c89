//! The rc-file parser (`-c`, `-C FILE`): any bytes give a configuration and
//! warnings, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmap_cli::cmd::common::rc;

fuzz_target!(|data: &[u8]| {
    let mut warnings = 0usize;
    let _ = rc::parse(data, &mut |_| warnings += 1);
});
