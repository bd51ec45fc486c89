//! Keeps a reading thread and its parser on different CPUs while they
//! work through a long file together.
//!
//! Each hand-over between the two wakes the other thread, and the
//! scheduler places a woken thread next to its waker (the wake is
//! "affine"): on a machine with two idle CPUs, `perf sched timehist` showed
//! the parser runnable but waiting up to 4 ms behind the reader on one CPU
//! while the other stayed idle, so that the two took turns instead of
//! overlapping. Binding each to its own CPU for the rest of the read stops
//! that; the parser's binding is undone when the read ends.
//!
//! Binding costs a migration (about 0.2 ms of CPU here), so it is asked
//! for only once the file proves longer than one block: a map of a few
//! thousand regions is read whole before it would pay off.

use std::{
    mem::{size_of, zeroed},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

/// The parser's CPU binding; dropping it gives the thread back the CPUs
/// it was allowed before.
pub struct Spread {
    before: libc::cpu_set_t,
}

impl Spread {
    /// Binds the calling thread (the parser) to the CPU it is on, and asks
    /// the reader, through `place`, to bind itself to another one. `None`
    /// (nothing changed) when the thread may use only one CPU, or the
    /// kernel refuses.
    pub fn begin(place: &Placement) -> Option<Spread> {
        // SAFETY: cpu_set_t is plain data; an all-zero set is valid.
        let mut before: libc::cpu_set_t = unsafe { zeroed() };
        // SAFETY: `before` is a cpu_set_t of the size passed.
        if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut before) } != 0 {
            return None;
        }
        // SAFETY: no arguments; returns -1 on failure.
        let here = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
        // SAFETY: CPU_ISSET reads within the set (`cpu < CPU_SETSIZE`).
        let allowed = |cpu: usize| cpu < SET_SIZE && unsafe { libc::CPU_ISSET(cpu, &before) };
        if !allowed(here) {
            return None;
        }
        let other = (1..SET_SIZE)
            .map(|i| (here + i) % SET_SIZE)
            .find(|&c| allowed(c))?;
        bind_self_to(here)?;
        place.0.store(other, Ordering::Relaxed);
        Some(Spread { before })
    }
}

impl Drop for Spread {
    fn drop(&mut self) {
        // SAFETY: `before` is a cpu_set_t of the size passed. If this fails
        // the thread stays on one CPU, which is slower but still correct.
        unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &self.before) };
    }
}

/// The CPU the parser asked the reader to move to, shared by the two.
#[derive(Clone, Default)]
pub struct Placement(Arc<AtomicUsize>);

/// No CPU asked for yet (CPU numbers are below `SET_SIZE`).
const NONE: usize = usize::MAX;
/// The request was taken.
const TAKEN: usize = usize::MAX - 1;
const SET_SIZE: usize = 8 * size_of::<libc::cpu_set_t>();

impl Placement {
    pub fn new() -> Placement {
        Placement(Arc::new(AtomicUsize::new(NONE)))
    }

    /// Called by the reader between reads: binds it to the CPU asked for,
    /// once. On failure it stays where the scheduler puts it.
    #[inline]
    pub fn follow(&self) {
        if self.0.load(Ordering::Relaxed) >= TAKEN {
            return;
        }
        let cpu = self.0.swap(TAKEN, Ordering::Relaxed);
        if cpu < SET_SIZE {
            let _ = bind_self_to(cpu);
        }
    }
}

fn bind_self_to(cpu: usize) -> Option<()> {
    // SAFETY: cpu_set_t is plain data; an all-zero set is valid.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    // SAFETY: CPU_SET writes within the set: callers pass cpu < SET_SIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a cpu_set_t of the size passed.
    (unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } == 0).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu_of_thread() -> usize {
        // SAFETY: no arguments.
        usize::try_from(unsafe { libc::sched_getcpu() }).expect("sched_getcpu")
    }

    #[test]
    fn parser_and_reader_end_up_on_different_cpus_and_the_parser_is_freed() {
        // SAFETY: a zeroed cpu_set_t filled by the kernel.
        let mut allowed: libc::cpu_set_t = unsafe { zeroed() };
        assert_eq!(
            unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut allowed) },
            0
        );
        // SAFETY: CPU_COUNT reads the set.
        let cpus = unsafe { libc::CPU_COUNT(&allowed) };
        let place = Placement::new();
        let spread = Spread::begin(&place);
        if cpus < 2 {
            assert!(spread.is_none(), "one CPU: nothing to spread");
            return;
        }
        let spread = spread.expect("two CPUs or more: the threads are spread");
        let here = cpu_of_thread();
        let reader = std::thread::spawn({
            let place = place.clone();
            move || {
                place.follow();
                cpu_of_thread()
            }
        });
        let there = reader.join().expect("reader thread");
        assert_ne!(here, there, "the reader must run on another CPU");
        assert_eq!(cpu_of_thread(), here, "the parser stays where it was");
        drop(spread);
        // SAFETY: a zeroed cpu_set_t filled by the kernel.
        let mut now: libc::cpu_set_t = unsafe { zeroed() };
        assert_eq!(
            unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut now) },
            0
        );
        // SAFETY: CPU_COUNT reads the set.
        assert_eq!(unsafe { libc::CPU_COUNT(&now) }, cpus, "binding undone");
    }
}
