//! A process with one of each kind of region the extra views explain:
//! private and shared file mappings (of a file whose name has a space),
//! touched anonymous memory, a PROT_NONE reservation, a memfd, a SysV shared
//! memory segment, an executable anonymous region and two extra threads with their own stacks.
//!
//! Usage: `views_workload DIR`. Prints one line `ready key=value ...` with
//! the addresses it mapped (hex) and the thread ids, then sleeps until killed.

use std::ffi::CString;
use std::io::Write;
use std::sync::mpsc;

fn fail(what: &str) -> ! {
    eprintln!(
        "views_workload: {what}: {}",
        std::io::Error::last_os_error()
    );
    std::process::exit(2)
}

fn map(len: usize, prot: i32, flags: i32, fd: i32) -> usize {
    // SAFETY: a fresh mapping chosen by the kernel (no MAP_FIXED), so no
    // existing memory is affected.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
    if p == libc::MAP_FAILED {
        fail("mmap");
    }
    p as usize
}

fn touch(addr: usize, len: usize) {
    // SAFETY: addr..addr+len is a writable mapping this program just made.
    unsafe { std::ptr::write_bytes(addr as *mut u8, 0x5a, len) };
}

fn main() {
    // The kernel-core test dumps this process with SIGQUIT: a shell that
    // started the tests in the background without job control has it
    // ignored, and the ignoring is inherited.
    // SAFETY: setting a signal's disposition to its default.
    unsafe { libc::signal(libc::SIGQUIT, libc::SIG_DFL) };
    let dir = std::env::args().nth(1).unwrap_or_else(|| "/tmp".into());
    let rw = libc::PROT_READ | libc::PROT_WRITE;

    let path = format!("{dir}/mapped file.dat");
    std::fs::write(&path, vec![7u8; 64 * 1024]).unwrap_or_else(|_| fail("write file"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap_or_else(|_| fail("open file"));
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let file_private = map(64 * 1024, libc::PROT_READ, libc::MAP_PRIVATE, fd);
    let file_shared = map(64 * 1024, rw, libc::MAP_SHARED, fd);
    touch(file_shared, 16 * 1024);

    let anon = map(1024 * 1024, rw, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1);
    touch(anon, 1024 * 1024);
    let reserve = map(
        2 * 1024 * 1024,
        libc::PROT_NONE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
    );

    // Where a JIT would put code (tests write /tmp/perf-PID.map for it).
    let jit = map(
        64 * 1024,
        libc::PROT_READ | libc::PROT_EXEC,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
    );

    // 4 MiB on a 2 MiB boundary with MADV_HUGEPAGE: transparent huge pages
    // where the kernel allows them (`-s` shows them as 2M runs).
    let raw = map(6 << 20, rw, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1);
    let thp = (raw + (2 << 20) - 1) & !((2 << 20) - 1);
    // SAFETY: thp..thp+4 MiB lies inside the 6 MiB mapping just made.
    unsafe { libc::madvise(thp as *mut libc::c_void, 4 << 20, libc::MADV_HUGEPAGE) };
    touch(thp, 4 << 20);

    let name = CString::new("views-memfd").unwrap_or_else(|_| fail("memfd name"));
    // SAFETY: name is a valid NUL-terminated string.
    let mfd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    // SAFETY: mfd is the descriptor just created.
    if mfd < 0 || unsafe { libc::ftruncate(mfd, 64 * 1024) } != 0 {
        fail("memfd");
    }
    let memfd = map(64 * 1024, rw, libc::MAP_SHARED, mfd);
    touch(memfd, 8 * 1024);

    // SAFETY: plain SysV calls; the segment is marked for removal at once so
    // that it goes away with this process.
    let (shmid, shm) = unsafe {
        let id = libc::shmget(libc::IPC_PRIVATE, 64 * 1024, libc::IPC_CREAT | 0o600);
        if id < 0 {
            fail("shmget");
        }
        let p = libc::shmat(id, std::ptr::null(), 0);
        if p as isize == -1 {
            fail("shmat");
        }
        libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
        (id, p as usize)
    };
    touch(shm, 4 * 1024);

    let (tx, rx) = mpsc::channel();
    let mut tids = Vec::new();
    for _ in 0..2 {
        let tx = tx.clone();
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() };
                // A malloc from this thread makes glibc give it an arena,
                // which `--names` must label.
                std::hint::black_box(vec![0u8; 4096]);
                let _ = tx.send(tid);
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
            })
            .unwrap_or_else(|_| fail("spawn"));
        tids.push(rx.recv().unwrap_or_else(|_| fail("thread id")));
    }

    let tids: Vec<String> = tids.iter().map(|t| t.to_string()).collect();
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "ready file_private={file_private:#x} file_shared={file_shared:#x} anon={anon:#x} \
         reserve={reserve:#x} thp={thp:#x} jit={jit:#x} memfd={memfd:#x} shm={shm:#x} shmid={shmid} tids={}",
        tids.join(",")
    );
    let _ = out.flush();
    drop(file);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
