#![no_std]
// Empty on purpose: this library exists so that pmap-cli can name this crate
// as a build-dependency, which makes cargo rebuild pmap-cli when it changes.
// The programs are in src/main.rs, built for bpfel-unknown-none.
