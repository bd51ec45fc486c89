//! What pmap prints about a process besides its regions (the header).

/// The per-process facts pmap needs before it reads the regions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The id the user asked for (a thread id is allowed).
    pub pid: u32,
    /// Thread group id: the process whose maps are read and whose id heads
    /// the output.
    pub tgid: u32,
    /// The header text after `PID:   `, already escaped.
    pub cmdline: Vec<u8>,
    /// `startstack` from `/proc/PID/stat` (0 for kernel threads).
    pub start_stack: u64,
}
