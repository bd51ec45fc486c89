//! Pieces of the text output: a delta's rows and shape, timestamps, the
//! summary's lines. Written into buffers directly: one delta per traced
//! call, no `fmt` machinery per row.

use std::io::{self, Write};

use crate::{
    cmd::trace::{delta::Stats, syscalls::Call},
    map::model::Change,
    map::region::Region,
    render::num,
};

/// `N exact (each call's own capture), M not exact (raced 2, ...)`.
pub(super) fn deltas_line(st: &Stats) -> String {
    let mut line = format!(
        "{} exact (from each call's capture), {} not exact",
        st.exact,
        st.fallback_total()
    );
    let reasons: Vec<String> = st
        .fallbacks
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(f, n)| format!("{} {n}", f.name()))
        .collect();
    if !reasons.is_empty() {
        line.push_str(&format!(" ({})", reasons.join(", ")));
    }
    if st.before_table > 0 {
        line.push_str(&format!(
            "; {} calls ended before the table they follow was read (in it, not printed)",
            st.before_table
        ));
    }
    line
}

/// Seconds with six decimals, rounded as `{:.6}` does, without the float
/// formatting (the tracer prints one per delta).
pub(super) struct Micros(pub(super) f64);

impl std::fmt::Display for Micros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = (self.0 * 1e6).round() as u64;
        write!(f, "{}.{:06}", us / 1_000_000, us % 1_000_000)
    }
}

/// `0000560a1b2c3000      16K rw-p name`: a region as deltas show it, with
/// the kernel's permission letters (p/s kept) and the raw name, appended to
/// `buf` (one per row of every delta: no `fmt` machinery).
pub(super) fn push_row(buf: &mut Vec<u8>, r: &Region) {
    num::hex_zero(buf, r.start, 16);
    buf.push(b' ');
    num::dec_right(buf, r.size() / 1024, 7);
    buf.extend_from_slice(b"K ");
    buf.extend_from_slice(r.perms.as_str().as_bytes());
    buf.push(b' ');
    push_name(buf, &r.name);
}

/// A region's name as text (invalid UTF-8 replaced, as everywhere in
/// trace output), or `[ anon ]` for an empty one.
pub(super) fn push_name(buf: &mut Vec<u8>, name: &[u8]) {
    if name.is_empty() {
        buf.extend_from_slice(b"[ anon ]");
    } else {
        buf.extend_from_slice(String::from_utf8_lossy(name).as_bytes());
    }
}

pub(super) fn calls_line(st: &Stats) -> String {
    if st.calls.is_empty() {
        return "none".into();
    }
    let mut calls: Vec<(&Call, &(u64, u64))> = st.calls.iter().collect();
    calls.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    calls
        .iter()
        .map(|(c, (n, f))| {
            if *f > 0 {
                format!("{} {n} ({f} failed)", c.name())
            } else {
                format!("{} {n}", c.name())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `   1 region -> 3` when a change split or merged regions.
/// `   1 region -> 3` when a change splits or merges regions.
pub(super) fn write_shape(out: &mut impl Write, c: &Change) -> io::Result<()> {
    let (before, after) = (c.removed.len(), c.added.len());
    if before == 0 || after == 0 || before == after {
        return Ok(());
    }
    let plural = |n: usize| if n == 1 { "region" } else { "regions" };
    write!(out, "   {before} {} -> {after}", plural(before))
}

/// The rows of a change: `~` for a region that kept its start address and
/// changed, `-` for one gone, `+` for one new.
pub fn write_change(buf: &mut Vec<u8>, c: &Change) {
    let mut added: Vec<Option<&Region>> = c.added.iter().map(Some).collect();
    for old in &c.removed {
        let same_start = added
            .iter_mut()
            .find(|a| a.is_some_and(|a| a.start == old.start));
        match same_start {
            Some(slot) => {
                let new = slot.take().expect("found as Some above");
                buf.extend_from_slice(b"  ~ ");
                push_row(buf, old);
                buf.extend_from_slice(b"  ->  ");
                num::dec(buf, new.size() / 1024);
                buf.extend_from_slice(b"K ");
                buf.extend_from_slice(new.perms.as_str().as_bytes());
                if new.name != old.name {
                    buf.push(b' ');
                    push_name(buf, &new.name);
                }
            }
            None => {
                buf.extend_from_slice(b"  - ");
                push_row(buf, old);
            }
        }
        buf.push(b'\n');
    }
    for new in added.into_iter().flatten() {
        buf.extend_from_slice(b"  + ");
        push_row(buf, new);
        buf.push(b'\n');
    }
}
