//! Loading and attaching the kernel programs, and reading what they send.
//!
//! Everything the kernel side needs from the machine is checked here first,
//! so that a failure names what is missing and how to fix it.

use std::{fmt, path::Path};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{TracePoint, trace_point::TracePointLink},
};
use pmap_common::{Event, StackCopy, TARGET_WORDS, counter};
use tokio::io::unix::AsyncFd;

use super::records::{decode, decode_copy};

/// The object built from `pmap-ebpf` by build.rs.
pub(crate) static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pmap"));

/// Memory-mapping syscalls that can add, remove, split, merge or re-protect
/// regions, by tracepoint name (the list the exporter counts too, owned by
/// `pmap_common`). The programs read the syscall number from the record,
/// so the names only choose where to attach.
pub fn syscalls() -> impl Iterator<Item = &'static str> {
    pmap_common::counters::SYSCALLS
        .iter()
        .map(|&(_, name)| name)
}

/// Syscalls that older kernels lack; attaching goes on without them.
const OPTIONAL: &[&str] = &["mseal"];

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// Settings for [`Probes::load`].
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Ring buffer size in bytes (a power of two multiple of the page size).
    pub ring_size: u32,
    /// Capture user stacks with every syscall event.
    pub stacks: bool,
    /// With `stacks`: bytes of user stack copied per event, for unwinding
    /// in userspace (`--stack-bytes`; 0: the frame-pointer walk only).
    pub stack_bytes: u64,
    /// Add the processes traced processes create to the kernel filter.
    pub follow: bool,
    /// `--comm`: the thread name (NUL-padded to the kernel's 16 bytes)
    /// whose processes join the trace at their next mapping call.
    pub comm: Option<[u8; 16]>,
    /// `--cgroup`: the group's id and depth; its processes, and those of
    /// the groups below it, join the trace at their next mapping call.
    pub cgroup: Option<(u64, u32)>,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            ring_size: DEFAULT_RING_SIZE,
            stacks: false,
            stack_bytes: 0,
            follow: false,
            comm: None,
            cgroup: None,
        }
    }
}

/// 2 MiB: about 20,000 records without a stack (104 bytes each with the
/// ring header), some 200 ms of the fastest rate measured here; the reader
/// drains every 2 ms. Mapped twice by the kernel, so it counts double in RSS.
pub const DEFAULT_RING_SIZE: u32 = 2 << 20;

/// Checks a `--ring-size` value: the kernel wants a power of two that is a
/// multiple of the page size.
pub fn check_ring_size(bytes: u64) -> Result<u32, String> {
    let page = page_size();
    if bytes < page || !bytes.is_power_of_two() || bytes > (1 << 30) {
        return Err(format!(
            "must be a power of two between the page size ({page}) and 1 GiB, e.g. {DEFAULT_RING_SIZE}"
        ));
    }
    Ok(bytes as u32)
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

/// What is missing for the eBPF backend; its `Display` says what to do.
#[derive(Debug)]
pub enum Unavailable {
    /// Capabilities the process lacks (names), with none of root's.
    Capabilities(Vec<&'static str>),
    /// tracefs is not mounted and mounting it failed.
    Tracefs(std::io::Error),
    /// The kernel has no tracepoint for these syscalls.
    Tracepoints(Vec<String>),
    /// The kernel has no BTF, which `bpf_task_pt_regs` needs.
    NoBtf,
    /// This binary was built without its kernel programs.
    NotBuilt,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Capabilities(missing) => {
                // The running binary, not whatever `pmap` is first in PATH
                // (that may be procps-ng's).
                let me = std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "/path/to/pmap".into());
                write!(
                    f,
                    "the eBPF backend needs capabilities CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) \
                     (missing: {}); run as root (sudo pmap trace ...) or grant them with \
                     `setcap cap_bpf,cap_perfmon,cap_dac_read_search+ep {me}`",
                    missing.join(", ")
                )
            }
            Unavailable::Tracefs(err) => write!(
                f,
                "tracefs is not mounted at {TRACEFS} and mounting it failed ({err}); \
                 mount it as root: `mount -t tracefs nodev {TRACEFS}`"
            ),
            Unavailable::Tracepoints(names) => write!(
                f,
                "this kernel has no syscall tracepoints for {} \
                 (needs CONFIG_FTRACE_SYSCALLS=y)",
                names.join(", ")
            ),
            Unavailable::NoBtf => write!(
                f,
                "this kernel has no BTF ({BTF} is missing; needs CONFIG_DEBUG_INFO_BTF=y): \
                 the kernel program reads each call's arguments from the registers saved at \
                 syscall entry, which needs it; use a kernel built with BTF, or \
                 `--backend poll`"
            ),
            Unavailable::NotBuilt => write!(
                f,
                "this pmap was built with PMAP_NO_EBPF=1, without its eBPF programs; \
                 rebuild it with `cargo xtask install`"
            ),
        }
    }
}

impl std::error::Error for Unavailable {}

const CAP_SYS_ADMIN: u32 = 21;
/// The kernel's own type information (BTF).
const BTF: &str = "/sys/kernel/btf/vmlinux";
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Checks what loading and attaching need, mounting tracefs if it can.
/// Returns the tracefs root to use.
pub fn check_environment() -> Result<&'static str, Unavailable> {
    if cfg!(pmap_no_ebpf) || OBJECT.is_empty() {
        return Err(Unavailable::NotBuilt);
    }
    let caps = super::privileges::effective();
    let has = |c: u32| caps & (1 << c) != 0;
    if !(has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) {
        let mut missing = Vec::new();
        if !has(CAP_BPF) {
            missing.push("CAP_BPF");
        }
        if !has(CAP_PERFMON) {
            missing.push("CAP_PERFMON");
        }
        return Err(Unavailable::Capabilities(missing));
    }
    if !Path::new(BTF).exists() {
        return Err(Unavailable::NoBtf);
    }
    let root = tracefs_root()?;
    let missing: Vec<String> = syscalls()
        .filter(|s| !OPTIONAL.contains(s))
        .filter(|s| !Path::new(&format!("{root}/events/syscalls/sys_exit_{s}")).exists())
        .map(|s| s.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Unavailable::Tracepoints(missing));
    }
    Ok(root)
}

/// Finds tracefs, mounting it at /sys/kernel/tracing when nothing has yet
/// (a fresh machine does not mount it, and aya attaches through it).
fn tracefs_root() -> Result<&'static str, Unavailable> {
    // One mount attempt at a time within this process; another process may
    // still mount concurrently, which the re-check after a failure covers.
    static MOUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = MOUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let mounted = || {
        [TRACEFS, DEBUGFS_TRACING]
            .into_iter()
            .find(|root| Path::new(root).join("events").is_dir())
    };
    if let Some(root) = mounted() {
        return Ok(root);
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: all pointers are valid NUL-terminated strings; data is null.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return mounted().ok_or(Unavailable::Tracefs(err));
    }
    Ok(TRACEFS)
}

/// The loaded and attached kernel programs and their maps. Dropping it
/// detaches every probe and frees the maps.
pub struct Probes {
    // Kept for its Drop: it owns the programs.
    _ebpf: Ebpf,
    /// The tracepoint links, taken from their programs so that `Drop`
    /// detaches them all at once (see there).
    links: Vec<TracePointLink>,
    ring: AsyncFd<RingBuf<MapData>>,
    targets: Array<MapData, u64>,
    counters: PerCpuArray<MapData, u64>,
    /// `--stack-bytes`: how much stack each process's calls need.
    stack_need: HashMap<MapData, u32, u64>,
    /// Tracepoints that were attached, for the "tracing" line.
    pub attached: Vec<String>,
}

impl Drop for Probes {
    /// Detaching a tracepoint waits for an RCU grace period, about 75 ms
    /// here: one after the other, the 20 links kept the tracer alive 1.5 s
    /// after its last line (after Ctrl-C, `--duration`, a closed output).
    /// Detached from a thread each, their waits overlap.
    fn drop(&mut self) {
        std::thread::scope(|s| {
            for link in self.links.drain(..) {
                // Without a thread, the closure and its link are dropped
                // here: detached in turn, as before.
                let _ = std::thread::Builder::new().spawn_scoped(s, move || drop(link));
            }
        });
    }
}

impl Probes {
    /// Loads and attaches everything. Must run inside a tokio runtime.
    pub fn load(opts: &ProbeOptions) -> Result<Probes> {
        check_environment()?;
        let mut config = 0;
        if opts.stacks {
            config |= pmap_common::config::STACKS;
        }
        // A group's processes fork into it: following them is implied.
        if opts.follow || opts.comm.is_some() || opts.cgroup.is_some() {
            config |= pmap_common::config::FOLLOW;
        }
        let mut comm_name = [0u64; 2];
        if let Some(c) = opts.comm {
            config |= pmap_common::config::COMM;
            for (w, chunk) in comm_name.iter_mut().zip(c.chunks_exact(8)) {
                *w = u64::from_ne_bytes(chunk.try_into().expect("8-byte chunks"));
            }
        }
        let (cgroup_id, cgroup_level) = opts.cgroup.unwrap_or((0, 0));
        if opts.cgroup.is_some() {
            config |= pmap_common::config::CGROUP;
        }
        let stack_bytes = match opts.stacks {
            true => opts.stack_bytes.min(pmap_common::MAX_STACK_BYTES as u64),
            false => 0,
        };
        let offsets = super::btf::running_kernel_offsets(BTF)?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("EVENTS", opts.ring_size)
            .override_global("OFFSETS", &offsets, true)
            .override_global("CONFIG", &config, true)
            .override_global("WAKE_AT", &(u64::from(opts.ring_size) / 4), true)
            .override_global("STACK_BYTES", &stack_bytes, true)
            .override_global("COMM_NAME", &comm_name, true)
            .override_global("CGROUP_ID", &cgroup_id, true)
            .override_global("CGROUP_LEVEL", &cgroup_level, true)
            .override_global("TRACER_TGID", &std::process::id(), true)
            .load(OBJECT)
            .context("loading the eBPF programs into the kernel failed")?;

        let root = tracefs_root()?;
        let mut attached = Vec::new();
        let mut links = Vec::new();
        for (prog, category, names) in [("sys_exit", "syscalls", "sys_exit_")] {
            let p: &mut TracePoint = ebpf
                .program_mut(prog)
                .with_context(|| format!("the eBPF object has no program {prog}"))?
                .try_into()?;
            p.load()
                .with_context(|| format!("the kernel refused the eBPF program {prog}"))?;
            for s in syscalls() {
                let tp = format!("{names}{s}");
                if OPTIONAL.contains(&s)
                    && !Path::new(&format!("{root}/events/{category}/{tp}")).exists()
                {
                    continue;
                }
                let id = p
                    .attach(category, &tp)
                    .with_context(|| format!("attaching to tracepoint {category}:{tp} failed"))?;
                links.push(p.take_link(id)?);
                attached.push(format!("{category}:{tp}"));
            }
        }
        for (prog, tp) in [
            ("sched_exec", "sched_process_exec"),
            ("sched_exit", "sched_process_exit"),
            ("sched_fork", "sched_process_fork"),
        ] {
            let p: &mut TracePoint = ebpf
                .program_mut(prog)
                .with_context(|| format!("the eBPF object has no program {prog}"))?
                .try_into()?;
            p.load()
                .with_context(|| format!("the kernel refused the eBPF program {prog}"))?;
            let id = p
                .attach("sched", tp)
                .with_context(|| format!("attaching to tracepoint sched:{tp} failed"))?;
            links.push(p.take_link(id)?);
            attached.push(format!("sched:{tp}"));
        }

        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("no EVENTS map")?)?;
        // SAFETY: the ring buffer's fd stays open for as long as the AsyncFd
        // owns the RingBuf, and nothing else registers it with the reactor.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .context("registering the ring buffer with the event loop failed")?;
        let targets = Array::try_from(ebpf.take_map("TARGETS").context("no TARGETS map")?)?;
        let counters =
            PerCpuArray::try_from(ebpf.take_map("COUNTERS").context("no COUNTERS map")?)?;
        let stack_need =
            HashMap::try_from(ebpf.take_map("STACK_NEED").context("no STACK_NEED map")?)?;
        Ok(Probes {
            _ebpf: ebpf,
            links,
            ring,
            targets,
            counters,
            stack_need,
            attached,
        })
    }

    /// Tells the kernel program how many bytes of stack to copy for the
    /// calls of process `tgid` (`--stack-bytes` is the most).
    pub fn set_stack_need(&mut self, tgid: u32, bytes: u64) -> Result<()> {
        self.stack_need
            .insert(tgid, bytes, 0)
            .with_context(|| format!("setting the stack copy size of process {tgid} failed"))
    }

    /// Starts reporting the process `tgid` (all its threads).
    pub fn add_target(&mut self, tgid: u32) -> Result<()> {
        self.set_target(tgid)
            .with_context(|| format!("adding process {tgid} to the kernel filter failed"))
    }

    /// Sets `tgid`'s bit. The kernel program sets bits too (a followed
    /// fork) and clears them (a process's exit), so this reads and writes
    /// back a word only before tracing starts, from one thread.
    fn set_target(&mut self, tgid: u32) -> Result<()> {
        let index = tgid / 64;
        if index >= TARGET_WORDS {
            bail!("process id {tgid} is above the kernel's limit (2^22)");
        }
        let bit = 1u64 << (tgid % 64);
        let word = self.targets.get(&index, 0)?;
        self.targets.set(index, word | bit, 0)?;
        Ok(())
    }

    /// Events lost so far because the ring buffer was full (all CPUs).
    pub fn lost(&self) -> u64 {
        self.counter(counter::LOST)
    }

    fn counter(&self, index: u32) -> u64 {
        self.counters
            .get(&index, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// Moves every event now in the ring buffer into `out`; returns how many
    /// records were malformed (never expected; counted rather than trusted).
    ///
    pub fn drain(&mut self, out: &mut Vec<Event>) -> usize {
        self.drain_with(out, |_, _, _| {})
    }

    /// [`Probes::drain`], handing each copy of a user stack
    /// (`--stack-bytes`) to `unwind` with the syscall record it goes with,
    /// whose stack `unwind` may replace with the unwound frames (the copy
    /// is not kept: it is most of the record).
    pub fn drain_with(
        &mut self,
        out: &mut Vec<Event>,
        mut unwind: impl FnMut(&mut Event, &StackCopy, &[u8]),
    ) -> usize {
        let ring = self.ring.get_mut();
        let mut bad = 0;
        let first = out.len();
        while let Some(item) = ring.next() {
            if let Some((copy, bytes)) = decode_copy(&item) {
                // Its syscall record was read just before it (see the
                // kernel program), with other CPUs' records maybe between.
                let ev = out[first..]
                    .iter_mut()
                    .rev()
                    .take(COPY_SEARCH)
                    .find(|e| u64::from(e.tid) == copy.tid);
                match ev {
                    Some(ev) => unwind(ev, &copy, bytes),
                    None => bad += 1,
                }
                continue;
            }
            match decode(&item) {
                Some(ev) => out.push(ev),
                None => bad += 1,
            }
        }
        bad
    }

    /// Waits until the ring buffer has data.
    pub async fn readable(&mut self) -> Result<()> {
        let mut guard = self.ring.readable_mut().await?;
        guard.clear_ready();
        Ok(())
    }
}

/// How many records back a stack copy's syscall record is looked for
/// (records of other CPUs may lie between them).
const COPY_SEARCH: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_size_must_be_power_of_two_pages() {
        assert!(check_ring_size(4096).is_ok());
        assert!(check_ring_size(1 << 22).is_ok());
        assert!(check_ring_size(1000).is_err());
        assert!(check_ring_size(3 * 4096).is_err());
        assert!(check_ring_size(0).is_err());
    }
}
