//! The ring buffer record decoder: any bytes the kernel side could hand over
//! decode to an event or are refused, never a crash; a decoded event
//! re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmap_cli::trace::probes::decode;
use pmap_common::{EVENT_SIZE, Event};

fuzz_target!(|data: &[u8]| {
    let Some(ev) = decode(data) else {
        assert_ne!(
            data.len(),
            EVENT_SIZE,
            "a record of the right size was refused"
        );
        return;
    };
    assert_eq!(data.len(), EVENT_SIZE);
    // SAFETY: Event is repr(C), Copy, of integer fields with explicit padding,
    // so viewing it as EVENT_SIZE bytes reads only initialised memory.
    let bytes =
        unsafe { std::slice::from_raw_parts((&ev as *const Event).cast::<u8>(), EVENT_SIZE) };
    assert_eq!(bytes, data, "decode changed the record");
});
