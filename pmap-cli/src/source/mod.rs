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
pub mod lines;
pub mod maps;
pub mod pid_dir;
pub mod prefetch;
pub mod process;
pub mod shm;
pub mod smaps;
