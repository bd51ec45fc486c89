//! Keeps a reading thread and its parser on different CPUs while they
//! work through a long file together.
//!
//! The scheduler places a woken or new thread next to the thread that woke
//! or started it (the wake is "affine"): on a machine with two idle CPUs,
//! `perf sched timehist` showed the parser runnable but waiting up to 4 ms
//! behind the reader on one CPU while the other stayed idle, so that the
//! two took turns instead of overlapping. Since the parser looks for blocks
//! on a timer instead of being woken for each (`source::prefetch`), it
//! still happens: without binding, 60,000 rows took 1.62x of `cat maps`
//! against 1.12x with it. Binding each to its own CPU for the rest of the
//! read stops that; the parser's binding is undone when the read ends. The
//! reader is bound where it runs and the parser moved, if need be: the
//! other way round, the reader waited for the parser to finish a block on
//! its CPU before it could move (0.7 ms of a 60,000-row read,
//! `CLOCK_THREAD_CPUTIME` against wall time).
//!
//! Binding may cost a migration (about 0.2 ms of CPU here), so it is asked
//! for only once the file proves long (`prefetch::SPREAD_AFTER`): a map of
//! a few thousand regions is read whole before it would pay off.

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
    /// Binds the reader, through `place`, to the CPU it last said it ran on,
    /// and the calling thread (the parser) to another one. The reader stays
    /// where it is: the parser may well be on the reader's CPU (see above),
    /// and binding itself there would keep the reader waiting for as long
    /// as it parses a block.
    /// `None` (nothing changed) when the thread may use only one CPU, or
    /// the kernel refuses.
    pub fn begin(place: &Placement) -> Option<Spread> {
        Spread::plan(place)?.bind()
    }

    /// The first half of [`Spread::begin`]: asks the other thread to bind
    /// itself, without binding this one yet. For a thread this one is
    /// about to start: started after this one is bound, it would inherit
    /// that one CPU, and could not even run to move away until this one
    /// waits.
    pub fn plan(place: &Placement) -> Option<Plan> {
        // SAFETY: cpu_set_t is plain data; an all-zero set is valid.
        let mut before: libc::cpu_set_t = unsafe { zeroed() };
        // SAFETY: `before` is a cpu_set_t of the size passed.
        if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut before) } != 0 {
            return None;
        }
        // SAFETY: CPU_ISSET reads within the set (`cpu < CPU_SETSIZE`).
        let allowed = |cpu: usize| cpu < SET_SIZE && unsafe { libc::CPU_ISSET(cpu, &before) };
        let other_than = |cpu: usize| {
            (1..SET_SIZE)
                .map(|i| (cpu + i) % SET_SIZE)
                .find(|&c| allowed(c))
        };
        let here = current_cpu().filter(|&c| allowed(c))?;
        let reader = place.0.reader.load(Ordering::Relaxed);
        let (mine, theirs) = if allowed(reader) && reader != here {
            (here, reader)
        } else if allowed(reader) {
            (other_than(reader)?, reader)
        } else {
            (here, other_than(here)?)
        };
        place.0.asked.store(theirs, Ordering::Relaxed);
        Some(Plan { before, mine })
    }
}

/// This thread's half of a [`Spread`], still to be bound.
pub struct Plan {
    before: libc::cpu_set_t,
    mine: usize,
}

impl Plan {
    /// Binds this thread to its CPU (`None`: the kernel refused, and the
    /// thread runs where it may, as before).
    pub fn bind(self) -> Option<Spread> {
        bind_self_to(self.mine)?;
        Some(Spread {
            before: self.before,
        })
    }
}

impl Drop for Spread {
    fn drop(&mut self) {
        let size = size_of::<libc::cpu_set_t>();
        // SAFETY: `before` is a cpu_set_t of the size passed.
        if unsafe { libc::sched_setaffinity(0, size, &self.before) } == 0 {
            return;
        }
        // The CPUs allowed before are no longer all there (a cpuset changed
        // meanwhile): every CPU, which the kernel narrows to those the
        // thread may use, rather than stay bound to one for good (the
        // tracer and the exporter live long).
        // SAFETY: cpu_set_t is plain data; all ones is a valid set.
        let every: libc::cpu_set_t = unsafe { std::mem::transmute([u8::MAX; SET_SIZE / 8]) };
        // SAFETY: `every` is a cpu_set_t of the size passed. If this fails
        // too, the thread stays on one CPU: slower, still correct.
        unsafe { libc::sched_setaffinity(0, size, &every) };
    }
}

/// What the reader and the parser tell each other about CPUs.
#[derive(Clone)]
pub struct Placement(Arc<Shared>);

struct Shared {
    /// The CPU the reader last ran on (`NONE`: not known yet).
    reader: AtomicUsize,
    /// The CPU the parser asked the reader to stay on.
    asked: AtomicUsize,
}

/// No CPU (CPU numbers are below `SET_SIZE`).
const NONE: usize = usize::MAX;
/// The request was taken.
const TAKEN: usize = usize::MAX - 1;
const SET_SIZE: usize = 8 * size_of::<libc::cpu_set_t>();

impl Placement {
    pub fn new() -> Placement {
        Placement(Arc::new(Shared {
            reader: AtomicUsize::new(NONE),
            asked: AtomicUsize::new(NONE),
        }))
    }

    /// Called by the reader before it hands a block over: where it runs.
    pub fn note_reader_cpu(&self) {
        if self.0.asked.load(Ordering::Relaxed) == NONE {
            self.0
                .reader
                .store(current_cpu().unwrap_or(NONE), Ordering::Relaxed);
        }
    }

    /// Whether the reader took the parser's request: from then on the two
    /// run on different CPUs (if the binding worked).
    pub fn bound(&self) -> bool {
        self.0.asked.load(Ordering::Relaxed) == TAKEN
    }

    /// Called by the reader between reads: binds it to the CPU asked for,
    /// once. On failure it stays where the scheduler puts it.
    #[inline]
    pub fn follow(&self) {
        if self.0.asked.load(Ordering::Relaxed) >= TAKEN {
            return;
        }
        let cpu = self.0.asked.swap(TAKEN, Ordering::Relaxed);
        if cpu < SET_SIZE {
            let _ = bind_self_to(cpu);
        }
    }
}

/// Whether this thread may run on more than one CPU (its binding, and any
/// CPU quota of its cgroup).
pub fn two_cpus() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
}

fn current_cpu() -> Option<usize> {
    // SAFETY: no arguments; returns -1 on failure.
    usize::try_from(unsafe { libc::sched_getcpu() }).ok()
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
        current_cpu().expect("sched_getcpu")
    }

    /// How many CPUs the calling thread may run on.
    fn allowed_cpus() -> i32 {
        // SAFETY: a zeroed cpu_set_t filled by the kernel.
        let mut set: libc::cpu_set_t = unsafe { zeroed() };
        assert_eq!(
            unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) },
            0
        );
        // SAFETY: CPU_COUNT reads the set.
        unsafe { libc::CPU_COUNT(&set) }
    }

    #[test]
    fn a_thread_started_between_plan_and_bind_inherits_no_binding() {
        let cpus = allowed_cpus();
        let place = Placement::new();
        let Some(plan) = Spread::plan(&place) else {
            assert!(cpus < 2, "two CPUs or more: a plan");
            return;
        };
        let started = std::thread::spawn({
            let place = place.clone();
            move || {
                let free = allowed_cpus();
                place.follow();
                (free, cpu_of_thread())
            }
        });
        let spread = plan.bind().expect("bound to its CPU");
        let here = cpu_of_thread();
        let (free, there) = started.join().expect("started thread");
        assert_eq!(free, cpus, "started with every CPU its starter had");
        assert_ne!(here, there, "then bound apart");
        drop(spread);
        assert_eq!(allowed_cpus(), cpus, "binding undone");
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

        // A reader that said where it runs stays there; the parser moves
        // off that CPU if it is on it.
        let place = Placement::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn({
            let place = place.clone();
            move || {
                place.note_reader_cpu();
                let noted = place.0.reader.load(Ordering::Relaxed);
                tx.send(noted).expect("parser waits");
                wait.recv().expect("parser asked");
                place.follow();
                (noted, cpu_of_thread())
            }
        });
        let noted = rx.recv().expect("reader noted its CPU");
        let spread = Spread::begin(&place).expect("two CPUs or more");
        go.send(()).expect("reader waits");
        let (was, now) = reader.join().expect("reader thread");
        assert_eq!((was, now), (noted, noted), "the reader stays on its CPU");
        assert_ne!(cpu_of_thread(), noted, "the parser is elsewhere");
        drop(spread);
        // SAFETY: a zeroed cpu_set_t filled by the kernel.
        let mut now: libc::cpu_set_t = unsafe { zeroed() };
        assert_eq!(
            unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut now) },
            0
        );
        // SAFETY: CPU_COUNT reads the set.
        assert_eq!(unsafe { libc::CPU_COUNT(&now) }, cpus, "binding undone");

        // Binding undone even when the set from before cannot be restored
        // (here: a CPU that does not exist, as after a cpuset shrank).
        bind_self_to(cpu_of_thread()).expect("bound to one CPU");
        // SAFETY: a zeroed cpu_set_t; CPU_SET writes within it.
        let mut gone: libc::cpu_set_t = unsafe { zeroed() };
        unsafe { libc::CPU_SET(SET_SIZE - 1, &mut gone) };
        drop(Spread { before: gone });
        // SAFETY: a zeroed cpu_set_t filled by the kernel.
        let mut now: libc::cpu_set_t = unsafe { zeroed() };
        assert_eq!(
            unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut now) },
            0
        );
        // SAFETY: CPU_COUNT reads the set.
        assert!(unsafe { libc::CPU_COUNT(&now) } > 1, "not left on one CPU");
    }
}
