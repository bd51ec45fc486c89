//! A summary's counts in a recording: the replayed summary needs the
//! tracer's counts (failed calls that changed nothing are counted, not
//! recorded as deltas).

use super::wire::{Cursor, Malformed, bad, put_u};
use crate::cmd::trace::{capture::Fallback, delta::Stats, syscalls::Call};

pub fn put(b: &mut Vec<u8>, st: &Stats) {
    put_u(b, st.calls.len() as u64);
    for (call, (n, f)) in &st.calls {
        put_u(
            b,
            Call::ALL.iter().position(|c| c == call).unwrap_or(0) as u64,
        );
        put_u(b, *n);
        put_u(b, *f);
    }
    for v in [
        st.bytes_mapped,
        st.bytes_unmapped,
        st.peak_mapped,
        st.peak_regions as u64,
        st.corrections,
        st.threads_started,
        st.processes_forked,
        st.exact,
        st.before_table,
    ] {
        put_u(b, v);
    }
    put_u(b, st.fallbacks.len() as u64);
    for (f, n) in &st.fallbacks {
        put_u(
            b,
            Fallback::ALL.iter().position(|x| x == f).unwrap_or(0) as u64,
        );
        put_u(b, *n);
    }
}

pub fn get(c: &mut Cursor) -> Result<Stats, Malformed> {
    let mut st = Stats::default();
    for _ in 0..c.count()? {
        let i = c.u()?;
        let Some(call) = usize::try_from(i).ok().and_then(|i| Call::ALL.get(i)) else {
            return bad(format!("syscall number {i} is not one this version knows"));
        };
        st.calls.insert(*call, (c.u()?, c.u()?));
    }
    st.bytes_mapped = c.u()?;
    st.bytes_unmapped = c.u()?;
    st.peak_mapped = c.u()?;
    st.peak_regions = usize::try_from(c.u()?).unwrap_or(usize::MAX);
    st.corrections = c.u()?;
    st.threads_started = c.u()?;
    st.processes_forked = c.u()?;
    st.exact = c.u()?;
    st.before_table = c.u()?;
    for _ in 0..c.count()? {
        let i = c.u()?;
        let Some(f) = usize::try_from(i).ok().and_then(|i| Fallback::ALL.get(i)) else {
            return bad(format!("fallback number {i} is not one this version knows"));
        };
        st.fallbacks.insert(*f, c.u()?);
    }
    Ok(st)
}
