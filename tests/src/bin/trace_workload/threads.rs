//! Threads: workers that run ops on request (so map changes come from
//! several thread ids), made either by std (glibc allocates and caches the
//! stack) or on a stack this program maps and unmaps itself (so the stack
//! region visibly appears and goes); short bursts of threads racing on
//! their own mappings; and growth of the main thread's stack.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use crate::ops::{Op, Outcome};
use crate::sys::{self, PAGE};
use crate::world::World;
use pmap_tests::rng::Rng;

enum Job {
    Run(Op, u64),
    Quit,
}

enum Handle {
    Std(std::thread::JoinHandle<()>),
    /// A pthread on a stack mapped here: (thread, stack address, stack length).
    Own(libc::pthread_t, usize, usize),
}

pub struct Worker {
    jobs: Sender<Job>,
    done: Receiver<Outcome>,
    handle: Handle,
}

fn worker_loop(world: Arc<Mutex<World>>, jobs: Receiver<Job>, done: Sender<Outcome>) {
    while let Ok(Job::Run(op, seed)) = jobs.recv() {
        let mut rng = Rng::new(seed);
        let out = world
            .lock()
            .expect("world lock poisoned")
            .apply(op, &mut rng);
        if done.send(out).is_err() {
            break;
        }
    }
}

extern "C" fn own_stack_start(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `arg` is the Box leaked by `Worker::spawn_own` for this thread only.
    let body: Box<Box<dyn FnOnce() + Send>> = unsafe { Box::from_raw(arg.cast()) };
    body();
    std::ptr::null_mut()
}

impl Worker {
    pub fn spawn(world: &Arc<Mutex<World>>, rng: &mut Rng) -> Result<Worker, String> {
        let (jobs, jobs_rx) = channel();
        let (done_tx, done) = channel();
        let w = Arc::clone(world);
        let body = move || worker_loop(w, jobs_rx, done_tx);
        let handle = if rng.chance(1, 2) {
            // Sizes vary so that glibc's stack cache cannot always reuse one.
            let size = rng.range(16, 128) * PAGE;
            let h = std::thread::Builder::new()
                .name("workload-worker".into())
                .stack_size(size)
                .spawn(body)
                .map_err(|e| format!("spawning a worker: {e}"))?;
            Handle::Std(h)
        } else {
            Self::spawn_own(Box::new(body), rng.range(32, 96) * PAGE)?
        };
        Ok(Worker { jobs, done, handle })
    }

    fn spawn_own(body: Box<dyn FnOnce() + Send>, len: usize) -> Result<Handle, String> {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK;
        let stack =
            sys::mmap(0, len, prot, flags, -1, 0).map_err(|e| format!("mmap stack: errno {e}"))?;
        // A guard page at the low end, as glibc does.
        sys::mprotect(stack, PAGE, libc::PROT_NONE)
            .map_err(|e| format!("stack guard: errno {e}"))?;
        let arg = Box::into_raw(Box::new(body));
        // SAFETY: attr is initialised before use and destroyed after; the
        // stack range is mapped read-write above (the guard page is below
        // the usable part), stays mapped until after pthread_join, and the
        // start routine takes ownership of `arg`.
        let tid = unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            libc::pthread_attr_init(&mut attr);
            libc::pthread_attr_setstack(&mut attr, (stack + PAGE) as *mut _, len - PAGE);
            let mut tid: libc::pthread_t = 0;
            let rc = libc::pthread_create(&mut tid, &attr, own_stack_start, arg.cast());
            libc::pthread_attr_destroy(&mut attr);
            if rc != 0 {
                drop(Box::from_raw(arg));
                let _ = sys::munmap(stack, len);
                return Err(format!("pthread_create: error {rc}"));
            }
            tid
        };
        Ok(Handle::Own(tid, stack, len))
    }

    /// Runs `op` on this worker's thread and waits for it.
    pub fn run(&self, op: Op, seed: u64) -> Outcome {
        self.jobs.send(Job::Run(op, seed)).expect("worker alive");
        self.done.recv().expect("worker answers")
    }

    pub fn stop(self) {
        let _ = self.jobs.send(Job::Quit);
        match self.handle {
            Handle::Std(h) => h.join().expect("worker thread panicked"),
            Handle::Own(tid, stack, len) => {
                // SAFETY: tid is a joinable thread created above, joined once.
                let rc = unsafe { libc::pthread_join(tid, std::ptr::null_mut()) };
                assert_eq!(rc, 0, "pthread_join");
                let _ = sys::munmap(stack, len);
            }
        }
    }
}

/// Two short-lived threads map, touch, protect and unmap their own memory
/// at the same time, so calls from different threads interleave.
pub fn burst(rng: &mut Rng) {
    let seeds = [rng.next_u64(), rng.next_u64()];
    std::thread::scope(|s| {
        for seed in seeds {
            s.spawn(move || {
                let mut r = Rng::new(seed);
                let prot = libc::PROT_READ | libc::PROT_WRITE;
                let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
                let mut mine = Vec::new();
                for _ in 0..r.range(10, 40) {
                    let n = r.range(1, 8);
                    if let Ok(a) = sys::mmap(0, n * PAGE, prot, flags, -1, 0) {
                        sys::touch_write(a, 1);
                        if n > 1 {
                            let _ = sys::mprotect(a + PAGE, PAGE, libc::PROT_READ);
                        }
                        mine.push((a, n));
                    }
                    if mine.len() > 4 {
                        let (a, n) = mine.swap_remove(r.below(mine.len()));
                        let _ = sys::munmap(a, n * PAGE);
                    }
                }
                for (a, n) in mine {
                    let _ = sys::munmap(a, n * PAGE);
                }
            });
        }
    });
}

/// Bytes of stack one recursion level uses.
const FRAME: usize = 16 * 1024;

#[inline(never)]
fn recurse(depth: usize) -> u8 {
    let mut buf = [0u8; FRAME];
    // Touch every page of the frame so the stack really grows down.
    for i in (0..FRAME).step_by(PAGE) {
        buf[i] = depth as u8;
    }
    let buf = std::hint::black_box(buf);
    let below = if depth > 0 { recurse(depth - 1) } else { 0 };
    buf[FRAME - 1].wrapping_add(below)
}

/// Grows the main thread's stack (a region change with no syscall).
pub fn grow_stack(depth: usize) {
    std::hint::black_box(recurse(depth));
}
