# The workload of `cargo xtask run`: maps and unmaps memory a few times,
# slowly enough to watch each change arrive in `pmap trace`.
import mmap
import sys
import time

time.sleep(0.5)
for i in range(1, 4):
    anon = mmap.mmap(-1, i * 1024 * 1024)  # shared anonymous, i MiB
    anon[0] = 1
    time.sleep(0.4)
    with open(sys.executable, "rb") as f:  # a read-only file mapping
        exe = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    time.sleep(0.4)
    exe.close()
    anon.close()
    time.sleep(0.4)
