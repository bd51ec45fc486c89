use which::which;

/// Rebuilds the programs when bpf-linker changes (it is their linker).
fn main() {
    if let Ok(path) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
