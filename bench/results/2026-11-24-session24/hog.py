import ctypes, os, struct, sys, time
busy, idle = float(sys.argv[1]) / 1e6, float(sys.argv[2]) / 1e6
slice_us = int(sys.argv[4]) if len(sys.argv) > 4 else 0
os.sched_setaffinity(0, {1})
if slice_us:
    libc = ctypes.CDLL(None, use_errno=True)
    attr = struct.pack("IIQiIQQQII", 56, 0, 0, 0, 0, slice_us * 1000, 0, 0, 0, 0)
    buf = ctypes.create_string_buffer(attr, 56)
    if libc.syscall(314, 0, buf, 0) != 0:
        print("sched_setattr failed", ctypes.get_errno(), file=sys.stderr)
end = time.time() + float(sys.argv[3])
while time.time() < end:
    t = time.perf_counter() + busy
    while time.perf_counter() < t: pass
    if idle: time.sleep(idle)
