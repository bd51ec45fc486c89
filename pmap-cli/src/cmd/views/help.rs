//! `pmap --help-views`: the options beyond procps-ng and every column they
//! print. (`pmap --help` stays procps-ng's text, byte for byte.) The same
//! options are described to clap in [`clap_args`] for the man page.

pub const TEXT: &str = "\
Views beyond procps-ng pmap (sizes in KiB):

 pmap [options] PID|CORE [...]

 --json            one JSON document per process or core, one per line
                   (keys: see docs/json.md); works with every format below
 --summary         one row per category: each binary/library as (code),
                   (rodata), (data); mapped files; shared memory; heap;
                   thread stacks; guard/reserved; special; anonymous.
                   Columns: Count, Size, RSS, PSS, PrivDirty, SharedDirty,
                   Swap, and a total row. Sorted by Size.
 --sort FIELD      order the rows of any table (or of --summary) by:
                   address, size, rss, pss, private_dirty, shared_dirty,
                   dirty, swap, count, name (sizes largest first)
 --names           label regions: [ stack tid=N ], [ stack guard tid=N ],
                   [ malloc arena ], [ malloc arena reserve ],
                   [ memfd:NAME ], [ shm key=0x.. id=N ], [ heap ], [ vdso ],
                   [ jit: N symbols ] (from /tmp/perf-PID.map)

Solaris pmap options (combine with -x and with each other):
 -x                with these: RSS, Anon (smaps Anonymous), Locked (smaps
                   Locked: KiB locked with mlock), Dirty columns
 Mode              rwxsR: s shared, R no swap reserved (MAP_NORESERVE,
                   smaps VmFlags nr)
 -l                unresolved dynamic linker map names: each loaded
                   object's regions named as the dynamic linker loaded it
                   (its link map: r_debug from the executable's DT_DEBUG),
                   e.g. libz.so.1 for the file libz.so.1.2.13,
                   linux-vdso.so.1 for [vdso]; the executable keeps its
                   file name. Reads /proc/PID/mem: needs ptrace access
                   (the process's owner, root or CAP_SYS_PTRACE)
 -S                Swap, SwapPss columns (smaps)
 -a                count shared mappings in Anon and Swap (else '-')
 --reserved, -r    only reserved address space (PROT_NONE): Kind column
                   (stack guard, arena reserve, file guard, guard,
                   reservation), a total and 'reserved: NK in N regions'.
                   -r alone is procps-ng's (ignored with a warning); it
                   means this with any other option of this page
 -s                Pgsz (KernelPageSize; per run of one page size from
                   /proc/PID/pagemap and /proc/kpageflags when readable,
                   '-' where nothing is mapped), MMU (MMUPageSize), THP
                   (AnonHugePages+FilePmdMapped+ShmemPmdMapped), Hugetlb
 -L                Policy and N0, N1... (KiB resident per NUMA node, from
                   /proc/PID/numa_maps)
 -F                accepted; does nothing (Linux needs no process grab)

Core files (an argument naming a file, not a number):
 default           Address Kbytes Mode Mapping
 -x                Address Kbytes Dumped Mode Mapping: Dumped is the KiB
                   stored in the core; RSS and Dirty are not in a core
 -d                Address Kbytes Mode Offset Device Mapping: the device
                   is ---:----- (not in a core); shared is known only for
                   SysV and /dev/zero mappings
                   Mode ??? : gcore left the mapping out; NT_FILE lists it
 header            core 'FILE' of PID:   COMMAND ARGS (the arguments from
                   the dumped stack; gcore's NT_PRPSINFO has only argv[0])
 -l                the link map where the core holds it (gcore and kernel
                   cores dump the dynamic linker's data): the same names
                   as live; else a warning and NT_FILE's resolved names
 --names, --json   work on cores (stacks from the threads' registers)
";

/// The views' options, for the clap description of the command line.
pub fn clap_args() -> Vec<clap::Arg> {
    use clap::{Arg, ArgAction};
    let flag =
        |id: &'static str, help: &'static str| Arg::new(id).action(ArgAction::SetTrue).help(help);
    vec![
        flag("json", "One JSON document per process or core (docs/json.md)").long("json"),
        flag("summary", "One row per category with count, size, RSS, PSS, dirty, swap").long("summary"),
        Arg::new("sort")
            .long("sort")
            .value_name("FIELD")
            .help("Order rows by address, size, rss, pss, private_dirty, shared_dirty, dirty, swap, count or name"),
        flag("names", "Label thread stacks, guards, malloc arenas, memfd, SysV shm, JIT code").long("names"),
        flag("swap", "Swap and SwapPss per mapping (Solaris -S)").short('S'),
        flag(
            "reserved",
            "Only reserved (PROT_NONE) address space, with a total (Solaris -r; -r alone is procps-ng's)",
        )
        .long("reserved")
        .short('r'),
        flag("all", "Count shared mappings in the Anon and Swap columns (Solaris -a)").short('a'),
        flag("force", "Accepted for Solaris compatibility; does nothing").short('F'),
        flag("numa", "Resident KiB per NUMA node from numa_maps (Solaris -L)").short('L'),
        flag("pagesizes", "Page sizes per run of pages (Solaris -s)").short('s'),
        flag(
            "link-names",
            "Name loaded objects as the dynamic linker does (libz.so.1, linux-vdso.so.1), from its link map (Solaris -l); also for cores",
        )
        .short('l'),
        flag("help-views", "Describe these options and their columns").long("help-views"),
    ]
}
