//! Loads and attaches the exporter's kernel programs (pmap-ebpf's
//! `counters` module) and reads their per-process counters.
//!
//! The programs share `pmap trace`'s object and its environment checks
//! (`source::kernel::probes`); only the counting programs are loaded, and the
//! tracer's ring buffer is shrunk to one page since nothing writes to it.

use std::path::Path;

use anyhow::{Context as _, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray},
    programs::TracePoint,
};
use pmap_common::counters::{ProcCounters, SYSCALLS, lost};

use crate::source::kernel::{btf::Btf, probes};

const BTF: &str = "/sys/kernel/btf/vmlinux";

/// The attached counting programs. Dropping it detaches them and frees
/// their maps (aya closes the links and program fds).
pub struct Counters {
    // Kept for its Drop: it owns the programs and their links.
    _ebpf: Ebpf,
    procs: HashMap<MapData, u32, ProcCounters>,
    lost: PerCpuArray<MapData, u64>,
    /// Tracepoints attached, for the start-up line.
    pub attached: Vec<String>,
}

impl Counters {
    /// Loads and attaches everything; the error says what is missing.
    pub fn load() -> Result<Counters> {
        let root = probes::check_environment()?;
        let btf_bytes =
            std::fs::read(BTF).with_context(|| format!("reading the kernel's BTF ({BTF})"))?;
        let btf = Btf::parse(&btf_bytes).context("parsing the kernel's BTF")?;
        let offsets = btf.kernel_offsets().context(
            "finding the kernel's field offsets in its BTF, which the counting programs need",
        )?;
        let page = probes::page_size() as u32;
        let mut ebpf = EbpfLoader::new()
            // The tracer's ring buffer: unused here, so as small as allowed.
            .map_max_entries("EVENTS", page)
            .override_global("OFFSETS", &offsets, true)
            .load(probes::OBJECT)
            .context("loading the exporter's eBPF programs into the kernel failed")?;

        let mut attached = Vec::new();
        // The exit program first, so no process's entry outlives it.
        attach(
            &mut ebpf,
            "count_sched_exit",
            "sched",
            &["sched_process_exit"],
            &mut attached,
        )?;
        let exits: Vec<String> = SYSCALLS
            .iter()
            .map(|(_, name)| format!("sys_exit_{name}"))
            // Syscalls this kernel lacks (mseal before 6.10) are not counted.
            .filter(|tp| Path::new(&format!("{root}/events/syscalls/{tp}")).exists())
            .collect();
        let exits: Vec<&str> = exits.iter().map(String::as_str).collect();
        attach(
            &mut ebpf,
            "count_sys_exit",
            "syscalls",
            &exits,
            &mut attached,
        )?;
        attach(
            &mut ebpf,
            "count_mprotect_enter",
            "syscalls",
            &["sys_enter_mprotect", "sys_enter_pkey_mprotect"],
            &mut attached,
        )?;

        let procs = HashMap::try_from(
            ebpf.take_map("PROC_COUNTERS")
                .context("the eBPF object has no PROC_COUNTERS map")?,
        )?;
        let lost = PerCpuArray::try_from(
            ebpf.take_map("COUNTER_LOST")
                .context("the eBPF object has no COUNTER_LOST map")?,
        )?;
        Ok(Counters {
            _ebpf: ebpf,
            procs,
            lost,
            attached,
        })
    }

    /// The counters of process `pid`; `None` if it made no counted call
    /// since the exporter started.
    pub fn get(&self, pid: u32) -> Option<ProcCounters> {
        self.procs.get(&pid, 0).ok()
    }

    /// Updates the kernel could not make (all CPUs, all reasons).
    pub fn lost(&self) -> u64 {
        (0..lost::COUNT)
            .filter_map(|i| self.lost.get(&i, 0).ok())
            .map(|v| v.iter().sum::<u64>())
            .sum()
    }

    /// Process entries the kernel holds now (for the exporter's own
    /// bounded-memory check: exited processes must be gone).
    pub fn entries(&self) -> usize {
        self.procs.keys().filter(Result::is_ok).count()
    }
}

fn attach(
    ebpf: &mut Ebpf,
    prog: &str,
    category: &str,
    tracepoints: &[&str],
    attached: &mut Vec<String>,
) -> Result<()> {
    let p: &mut TracePoint = ebpf
        .program_mut(prog)
        .with_context(|| format!("the eBPF object has no program {prog}"))?
        .try_into()?;
    p.load()
        .with_context(|| format!("the kernel refused the eBPF program {prog}"))?;
    for tp in tracepoints {
        p.attach(category, tp)
            .with_context(|| format!("attaching {prog} to tracepoint {category}:{tp} failed"))?;
        attached.push(format!("{category}:{tp}"));
    }
    Ok(())
}
