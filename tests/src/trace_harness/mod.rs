//! Driving `pmap trace` and the workloads it traces, for the end-to-end
//! tests in tests/tests/trace_*: start the tracer and read its output as
//! it comes, start a workload and catch its checkpoint stops, take `pmap`
//! snapshots, compare tables with a readable diff, and list the eBPF objects
//! a process holds.
//!
//! Everything here panics with a message that says what was expected and
//! shows what came instead (these are test helpers).

mod compare;
mod lines;
mod output;
mod system;
mod tracer;
mod workload;

pub use compare::{
    REFERENCE_PMAP, assert_deltas_replay_to_tables, assert_regions_match, assert_table_matches,
    diff, json_region_line, maps_lines, reference_pmap,
};
pub use output::{
    Summary, TABLE_END, Table, delta_blocks, non_table_lines, number_after, parse_summary,
    parse_table_header, parse_tables, printed_unchanging_failures,
};
pub use system::{BpfObjects, bpf_objects_of, bpftool_ids, find_elf, serial, unused_pid};
pub use tracer::Tracer;
pub use workload::{Event, Workload, wait_stopped_or_gone};
