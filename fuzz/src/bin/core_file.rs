//! The ELF core reader: any file gives a core or a one-line error, never a
//! panic. The bytes go through a file because that is what the reader
//! takes (it reads headers and notes lazily).
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use pmap_cli::source::core_file;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("pmap-fuzz-core-{}", std::process::id()));
    let mut f = std::fs::File::create(&path).expect("temp file");
    f.write_all(data).expect("write temp file");
    drop(f);
    if let Err(e) = core_file::read(&path) {
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "error is not one line: {msg}");
    }
    // The note decoders on their own, on the same bytes.
    let _ = core_file::notes::prpsinfo(data);
    let _ = core_file::notes::prstatus(data);
    let _ = core_file::notes::nt_file(data);
    let _ = core_file::notes::auxv(data);
});
