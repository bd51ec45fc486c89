//! `pmap exporter` command line.

use std::net::SocketAddr;

use clap::{ArgGroup, Parser, ValueEnum};

use crate::source::groups::{self, Cgroup};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// eBPF counters if they can be used here, else polling (said on stderr).
    Auto,
    /// eBPF counters at the memory-mapping syscall tracepoints.
    Ebpf,
    /// /proc gauges only (no privileges needed; no syscall counters).
    Poll,
}

/// Serve Prometheus metrics about processes' memory maps: regions against
/// vm.max_map_count, bytes and RSS by kind (as `--summary`), and, with
/// eBPF, per-process counts of memory-mapping syscalls, splits and W^X
/// flips. GET /metrics answers in the Prometheus text format.
#[derive(Debug, Parser)]
#[command(
    name = "pmap exporter",
    bin_name = "pmap exporter",
    version,
    group(ArgGroup::new("select").args(["all", "comm", "cgroup"])),
    after_help = "Examples:\n  pmap exporter --listen 127.0.0.1:9256\n  pmap exporter --listen 127.0.0.1:9256 --comm postgres --top 10\n  pmap exporter --listen [::1]:9256 --cgroup /system.slice/nginx.service"
)]
pub struct ExporterArgs {
    /// Address and port to serve on; loopback addresses only (127.0.0.0/8,
    /// ::1): put a reverse proxy with TLS and authentication in front to
    /// expose it.
    #[arg(long, value_name = "ADDR:PORT", value_parser = loopback)]
    pub listen: SocketAddr,
    /// Every process (the default).
    #[arg(long)]
    pub all: bool,
    /// Only processes whose command name (/proc/PID/comm) is NAME.
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
    /// Only processes in this cgroup (v2) or below it, as in
    /// /proc/PID/cgroup (`/system.slice/x.service`) or under /sys/fs/cgroup
    /// (or /sys/fs/cgroup/unified beside cgroup v1).
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<String>,
    /// Scrapes closer together than SECS share one collection (at least 0).
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = interval_secs)]
    pub interval: f64,
    /// Per-process series for the N processes with the most mappings; the
    /// rest are summed into one series with pid="other".
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,
    /// Where the counters come from.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
}

/// The processes to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    All,
    /// The command name, as the kernel keeps it (15 bytes at most).
    Comm(String),
    /// A cgroup v2 group and the groups below it.
    Cgroup(Cgroup),
}

impl ExporterArgs {
    /// What `--all`, `--comm` or `--cgroup` select, checked as `pmap trace`
    /// checks them (a group that does not exist is an error).
    pub fn selection(&self) -> Result<Selection, String> {
        if let Some(c) = &self.comm {
            return groups::parse_comm(c).map(|(_, kept)| Selection::Comm(kept));
        }
        if let Some(g) = &self.cgroup {
            return groups::parse_cgroup(g).map(Selection::Cgroup);
        }
        Ok(Selection::All)
    }
}

fn loopback(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s
        .parse()
        .map_err(|e| format!("{e}: give ADDR:PORT, e.g. 127.0.0.1:9256 or [::1]:9256"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{} is not a loopback address: the exporter serves loopback only (127.0.0.0/8, ::1), \
             since /metrics names every process on the machine; expose it through a reverse \
             proxy with TLS and authentication",
            addr.ip()
        ));
    }
    Ok(addr)
}

fn interval_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("{e}: give seconds, e.g. 1 or 0.5"))?;
    if !(0.0..=3600.0).contains(&v) {
        return Err("must be between 0 and 3600 seconds".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ExporterArgs, clap::Error> {
        ExporterArgs::try_parse_from(std::iter::once("exporter").chain(args.iter().copied()))
    }

    #[test]
    fn only_loopback_addresses() {
        assert!(parse(&["--listen", "127.0.0.1:9256"]).is_ok());
        assert!(parse(&["--listen", "[::1]:9256"]).is_ok());
        let e = parse(&["--listen", "0.0.0.0:9256"]).expect_err("refused");
        assert!(e.to_string().contains("loopback"), "{e}");
    }

    #[test]
    fn selections_exclude_each_other() {
        assert!(parse(&["--listen", "127.0.0.1:1", "--all", "--comm", "x"]).is_err());
        // The root group exists wherever the v2 hierarchy is mounted.
        let a = parse(&["--listen", "127.0.0.1:1", "--cgroup", "/"]).expect("parses");
        assert!(matches!(a.selection(), Ok(Selection::Cgroup(g)) if g.path == "/"));
        let a = parse(&["--listen", "127.0.0.1:1", "--cgroup", "/no/such/group"]).expect("parses");
        assert!(a.selection().is_err(), "a group that does not exist");
        let a =
            parse(&["--listen", "127.0.0.1:1", "--comm", "a-very-long-program"]).expect("parses");
        assert_eq!(a.selection(), Ok(Selection::Comm("a-very-long-pro".into())));
        let a = parse(&["--listen", "127.0.0.1:1"]).expect("parses");
        assert_eq!(a.selection(), Ok(Selection::All));
    }
}
