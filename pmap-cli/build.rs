//! Builds the eBPF programs (pmap-ebpf, for bpfel-unknown-none, with the
//! nightly toolchain and bpf-linker) and leaves the object in OUT_DIR, where
//! src/cmd/trace/probes.rs embeds it.
//!
//! `PMAP_NO_EBPF=1` skips that and embeds an empty object instead, so the
//! userspace code can be checked on a machine without bpf-linker; such a
//! binary says so when asked to trace.
use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=PMAP_NO_EBPF");
    println!("cargo::rustc-check-cfg=cfg(pmap_no_ebpf)");
    if env::var_os("PMAP_NO_EBPF").is_some_and(|v| v == "1") {
        let out = PathBuf::from(env::var("OUT_DIR")?);
        fs::write(out.join("pmap"), [])?;
        println!("cargo:rustc-cfg=pmap_no_ebpf");
        return Ok(());
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../pmap-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "pmap-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
