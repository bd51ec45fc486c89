//! Helpers shared by the end-to-end tests: finding the built `pmap`,
//! starting and stopping workload processes.

use std::path::PathBuf;

/// The `pmap` binary under test: `$PMAP_BIN` if set, else the one cargo
/// built next to this test executable (`cargo xtask test` builds it first).
pub fn pmap_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PMAP_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/pmap
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test executable is in target/<profile>/deps");
    let bin = dir.join("pmap");
    assert!(
        bin.exists(),
        "{} does not exist: build it first (`cargo build -p pmap-cli`) or set PMAP_BIN",
        bin.display()
    );
    bin
}

/// A workload binary of this crate (tests/src/bin/NAME.rs), built by cargo
/// next to the test executable.
pub fn workload_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test executable is in target/<profile>/deps");
    dir.join(name)
}

pub mod pmap_table;
pub mod rng;
pub mod trace_harness;
pub mod views_util;
