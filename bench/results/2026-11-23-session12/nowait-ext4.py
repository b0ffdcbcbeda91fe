#!/usr/bin/env python3
"""Which O_DIRECT writes ext4 takes with RWF_NOWAIT (io_uring issues those
inline; on EAGAIN it hands the write to an io-wq worker thread). Run in a
directory on the file system to test: python3 nowait-ext4.py"""
import errno, mmap, os

p = "nowait-test.bin"
if os.path.exists(p):
    os.unlink(p)
fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
os.posix_fallocate(fd, 0, 8 << 20)  # mode 0: unwritten extents, size ahead
buf = mmap.mmap(-1, 1 << 20)
buf.write(b"x" * (1 << 20))

def w(off, ln, label):
    try:
        os.pwritev(fd, [memoryview(buf)[:ln]], off, os.RWF_NOWAIT)
        print(f"{label:55s} ok")
    except OSError as e:
        print(f"{label:55s} {errno.errorcode[e.errno]}")

w(0, 4096, "4K into unwritten at 0")
w(0, 4096, "4K again at 0 (now written)")
w(0, 8192, "8K at 0: written block + unwritten block")
w(8192, 65536, "64K at 8K: pure unwritten, after written")
w(73728, 65536, "64K at 72K: pure unwritten, right after written")
w(73728 + 61440, 65536, "64K starting at last written block (carry)")
w(1 << 20, 1 << 20, "1M pure unwritten at 1M")
w((2 << 20) - 4096, 1 << 20, "1M starting at last written block (carry)")
os.close(fd)
os.unlink(p)
