//! The only code that reads what the kernel (or a core file, or a JIT)
//! tells about a process: `/proc`, core files, perf maps. It reads and
//! parses into `map`'s types; printing is `render`'s job.
//!
//! - `pid_dir`: one process's `/proc/PID` held open.
//! - `checked`: whether a read of a map is the whole map, and the one
//!   checked and retried map read.
//! - `gone`: whether an error means the process is gone (ESRCH: its
//!   address space; ENOENT: the process).
//! - `stat`: the one parser of `/proc/PID/stat`.
//! - `maps`: `/proc/PID/maps` lines into `Region`s.
//! - `smaps`: `/proc/PID/smaps` entries (region, fields, VmFlags);
//!   `smaps_fields`: its fast paths for field lines.
//! - `process`: the header facts (thread group id, escaped command line,
//!   start of stack).
//! - `query`: one region at a time from the kernel (`PROCMAP_QUERY`).
//! - `threads`: each thread's stack pointer.
//! - `perf_map`: `/tmp/perf-PID.map`, the symbols JITs write for perf.
//! - `shm`: the device minor of SysV shared memory.
//! - `lines`: chunked line splitting shared by the parsers.
//! - `prefetch`: reading a file ahead on a second thread.
//! - `core_file`: ELF core files (headers and notes).
//! - `link_map`: the dynamic linker's names of the loaded objects (`-l`).
//! - `groups`: processes by command name or cgroup (`--comm`, `--cgroup`).
//! - `kernel`: the eBPF programs: the kernel's BTF offsets they need,
//!   loading and attaching them, their ring buffer of events and counters
//!   (`pmap trace`, `pmap exporter`).
//! - `numa_maps`: each region's NUMA policy and pages per node (`-L`).
//! - `page_frames`: the frames behind a region's pages, from `pagemap`,
//!   `/proc/kpageflags` and sysfs (`-s`).
//! - `elf_module`: a mapped ELF file's segments, build id, debug link and
//!   call-frame sections (`pmap trace --stacks`).
pub(crate) mod checked;
pub mod core_file;
pub(crate) mod elf_module;
pub(crate) mod gone;
pub(crate) mod groups;
pub(crate) mod growing;
pub mod kernel;
pub(crate) mod lines;
pub(crate) mod link_map;
pub mod maps;
pub(crate) mod numa_maps;
pub(crate) mod page_frames;
pub(crate) mod perf_map;
pub(crate) mod pid_dir;
pub(crate) mod prefetch;
pub(crate) mod process;
pub(crate) mod query;
pub(crate) mod shm;
pub mod smaps;
pub(crate) mod smaps_fields;
pub(crate) mod stat;
pub(crate) mod system;
pub(crate) mod threads;
