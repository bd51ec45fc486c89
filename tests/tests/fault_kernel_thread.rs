//! `pmap trace` on a kernel thread (issue 7: "kernel threads"): it has no
//! address space, so there is nothing to trace; both backends must say so
//! in one line and fail, not report "no such process" or hang.

use std::{process::Command, time::Duration};

use pmap_tests::pmap_bin;

#[test]
fn a_kernel_thread_is_refused_in_one_line() {
    let pid = pmap_tests::kernel_thread().to_string();
    for backend in ["ebpf", "poll"] {
        let started = std::time::Instant::now();
        let out = Command::new(pmap_bin())
            .args(["trace", "--backend", backend, "--duration", "20", &pid])
            .output()
            .expect("pmap runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{backend}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(10), "{backend}");
        assert_eq!(
            stderr.trim_end(),
            format!("pmap trace: process {pid} is a kernel thread: it has no memory map to trace"),
            "{backend}"
        );
        assert!(out.stdout.is_empty(), "{backend}");
    }
}
