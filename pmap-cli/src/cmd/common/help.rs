//! What `pmap --help` adds after procps-ng's text: the commands and
//! options beyond procps-ng (shared by the snapshot's `-h` and `pmap man`).

/// Printed after procps-ng's `--help` text (only there: the usage text
/// printed on errors stays procps-ng's, byte for byte).
pub const BEYOND_PROCPS: &str = "
Beyond procps-ng:
 pmap trace PID | -- COMMAND  the memory map live, change by change (--help)
 pmap replay FILE             a trace --record FILE again; --at WHEN: the map
                              then; --leaks: what stayed mapped, by call site
 pmap diff A B                a map at two moments, PIDs, cores or snapshots
 pmap exporter                memory-map metrics for Prometheus (--help)
 pmap --help-views            --json, --summary, --sort, --names, Solaris's
                              -S -a -r -s -L -l, core files, and their columns
 pmap man [PAGE]              print a man page (pmap man --list)
 pmap completions SHELL       print completions for bash, zsh or fish
";
