//! Readers of the kernel's view of a process. They only read and parse;
//! printing is `format`'s job.
//!
//! - `maps`: `/proc/PID/maps` lines into `Region`s.
//! - `smaps`: `/proc/PID/smaps` entries (region, fields, VmFlags).
//! - `process`: the header facts (thread group id, escaped command line,
//!   start of stack).
//! - `shm`: the device minor of SysV shared memory.
//! - `pid_dir`: one process's `/proc/PID` held open; whether a read of
//!   its map was complete.
//! - `lines`: chunked line splitting shared by the parsers.
//! - `prefetch`: reading a file ahead on a second thread.
//! - `link_map`: the dynamic linker's names of the loaded objects (`-l`).
//! - `groups`: processes by command name or cgroup (`--comm`, `--cgroup`).
pub mod groups;
pub mod lines;
pub mod link_map;
pub mod maps;
pub mod pid_dir;
pub mod prefetch;
pub mod process;
pub mod shm;
pub mod smaps;
