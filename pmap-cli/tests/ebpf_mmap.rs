//! The kernel programs, loaded and attached for real: an mmap made by this
//! test's own thread must arrive through the ring buffer with its arguments,
//! its result and the thread id. Needs root (CI and `cargo xtask test` run
//! as root); works whether or not tracefs is mounted yet.

use std::time::{Duration, Instant};

use pmap_cli::source::kernel::probes::{ProbeOptions, Probes};
use pmap_common::Event;

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

async fn wait_for(probes: &mut Probes, pred: impl Fn(&Event) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(100), probes.readable()).await;
        probes.drain(&mut seen);
        if seen.iter().any(&pred) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "event never arrived; saw {seen:#?}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn mmap_event_arrives_with_its_fields() {
    let mut probes = Probes::load(&ProbeOptions::default())
        .unwrap_or_else(|e| panic!("loading the probes failed (this test needs root): {e:#}"));
    let pid = std::process::id();
    probes.add_target(pid).expect("filter on our pid");

    // A length no one else would use, to pick our call out.
    let len = 4096 * 1007;
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    // SAFETY: a fresh anonymous mapping, unmapped below, never dereferenced.
    let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, -1, 0) };
    assert_ne!(addr, libc::MAP_FAILED);
    let tid = gettid();

    let is_ours = |e: &Event| e.kind == libc::SYS_mmap as u32 && e.args[1] == len as u64;
    let events = wait_for(&mut probes, is_ours).await;
    let ev = events.iter().find(|e| is_ours(e)).expect("found above");
    assert_eq!(ev.tgid, pid);
    assert_eq!(ev.tid, tid);
    assert_eq!(ev.args[0], 0, "addr hint");
    assert_eq!(ev.args[2], prot as u64);
    assert_eq!(ev.args[3], flags as u64);
    assert_eq!(ev.args[4] as i32, -1, "fd");
    assert_eq!(ev.ret, addr as i64, "returned address");
    assert!(ev.exit_ns > 0);
    assert_eq!(probes.lost(), 0);

    // SAFETY: unmapping exactly what was mapped above.
    assert_eq!(unsafe { libc::munmap(addr, len) }, 0);
    let is_unmap = |e: &Event| e.kind == libc::SYS_munmap as u32 && e.args[0] == addr as u64;
    let events = wait_for(&mut probes, is_unmap).await;
    let ev = events.iter().find(|e| is_unmap(e)).expect("found above");
    assert_eq!(ev.args[1], len as u64);
    assert_eq!(ev.ret, 0);
    assert_eq!(ev.tid, tid);

    // Nothing from other processes crosses the ring buffer.
    assert!(events.iter().all(|e| e.tgid == pid));
}

/// The filter in the kernel both ways: with this process as the target, a
/// child's calls (its loader mapping libc) never cross the ring, and ours,
/// made after the child exited, do. A build that emits nothing fails.
#[tokio::test(flavor = "current_thread")]
async fn other_processes_are_filtered_out_in_the_kernel() {
    let mut probes = Probes::load(&ProbeOptions::default()).expect("load (needs root)");
    let pid = std::process::id();
    probes.add_target(pid).expect("filter on our pid");
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("`true` runs (coreutils)");
    let child_pid = child.id();
    assert!(child.wait().expect("wait for true").success());

    // A length no one else would use; the call comes after all the child's.
    let len = 4096 * 1009;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    // SAFETY: a fresh anonymous mapping, unmapped below, never dereferenced.
    let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, flags, -1, 0) };
    assert_ne!(addr, libc::MAP_FAILED);
    let is_ours = |e: &Event| e.kind == libc::SYS_mmap as u32 && e.args[1] == len as u64;
    let events = wait_for(&mut probes, is_ours).await;
    // SAFETY: unmapping exactly what was mapped above.
    assert_eq!(unsafe { libc::munmap(addr, len) }, 0);
    let others: Vec<&Event> = events.iter().filter(|e| e.tgid != pid).collect();
    assert!(
        others.is_empty(),
        "events of other processes (the child was {child_pid}): {others:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.kind == libc::SYS_mmap as u32 && e.tgid == pid),
        "our own mmap did not arrive"
    );
}

/// `--stacks --stack-bytes`: the copy of the user stack arrives with the
/// syscall record it belongs to, holds the stack as it was at the call
/// (a marker word this thread put on its own stack is in it, at its
/// offset from the stack pointer) and no more than was asked.
#[tokio::test(flavor = "current_thread")]
async fn the_stack_copy_arrives_with_its_call_and_holds_the_callers_stack() {
    let asked = pmap_common::MAX_STACK_BYTES as u64;
    let mut probes = Probes::load(&ProbeOptions {
        stacks: true,
        stack_bytes: asked,
        ..ProbeOptions::default()
    })
    .expect("load (needs root)");
    let pid = std::process::id();
    probes.add_target(pid).expect("filter on our pid");
    let marker: u64 = 0x5eed_cafe_f00d_0042;
    let on_stack = std::hint::black_box([marker; 4]);
    let len = 4096 * 1013;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    // SAFETY: a fresh anonymous mapping, unmapped below, never dereferenced.
    let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, flags, -1, 0) };
    assert_ne!(addr, libc::MAP_FAILED);
    std::hint::black_box(&on_stack);
    let tid = gettid();
    let is_ours = |e: &Event| e.kind == libc::SYS_mmap as u32 && e.args[1] == len as u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut copies = Vec::new();
    let mut seen = Vec::new();
    while !seen.iter().any(is_ours) {
        assert!(Instant::now() < deadline, "the mmap never arrived");
        let _ = tokio::time::timeout(Duration::from_millis(100), probes.readable()).await;
        probes.drain_with(&mut seen, |ev, copy, bytes| {
            copies.push((ev.kind, ev.args[1], copy.tid, copy.sp, bytes.to_vec()));
        });
    }
    // SAFETY: unmapping exactly what was mapped above.
    assert_eq!(unsafe { libc::munmap(addr, len) }, 0);
    let (_, _, copy_tid, sp, bytes) = copies
        .iter()
        .find(|c| c.0 == libc::SYS_mmap as u32 && c.1 == len as u64)
        .expect("a stack copy paired with our mmap");
    assert_eq!(*copy_tid, u64::from(tid));
    assert!(
        !bytes.is_empty() && bytes.len() <= asked as usize,
        "{} bytes",
        bytes.len()
    );
    let at = on_stack.as_ptr() as u64;
    assert!(at >= *sp, "the marker lies above the stack pointer");
    let off = (at - sp) as usize;
    let word = bytes.get(off..off + 8).unwrap_or_else(|| {
        panic!(
            "the marker {off} bytes above sp is outside the {} bytes copied",
            bytes.len()
        )
    });
    assert_eq!(
        u64::from_ne_bytes(word.try_into().expect("8 bytes")),
        marker
    );
    assert_eq!(probes.lost(), 0);
}
