//! The kernel side of `pmap trace` and `pmap exporter`: the eBPF object
//! built from `pmap-ebpf`, the `vm_area_struct` offsets it is given from
//! the kernel's BTF, and the programs loaded, attached and read.
//!
//! - `btf`: field offsets from `/sys/kernel/btf/vmlinux`.
//! - `privileges`: what the programs need, and giving it up once they
//!   are attached.
//! - `probes`: loading and attaching the programs; the ring buffer of
//!   events, the target filter and the counters.
//! - `records`: the ring buffer's records, decoded.
pub mod btf;
pub mod privileges;
pub mod probes;
pub mod records;
