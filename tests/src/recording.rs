//! Helpers of the recording tests (tests/tests/trace_record.rs,
//! trace_leaks.rs): temporary recording paths and running `pmap`.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use crate::pmap_bin;

/// A fresh path for a file of this test process.
pub fn rec_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pmap-trace-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the test's temporary directory");
    dir.join(name)
}

/// `pmap ARGS`, its output captured.
pub fn pmap(args: &[&str]) -> Output {
    Command::new(pmap_bin())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running pmap {args:?}: {e}"))
}

/// Bytes as text (lossy).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Bytes as lines.
pub fn lines(b: &[u8]) -> Vec<String> {
    text(b).lines().map(str::to_string).collect()
}
