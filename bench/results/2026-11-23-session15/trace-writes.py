"""Reads `perf script` output of io_uring and block events (trace-writes.sh)
and prints the latency of write requests in the kernel and on the device."""
import re
import sys

submitted, uring = {}, []
issued, block = {}, []
for line in sys.stdin:
    m = re.search(r" (\d+\.\d+): +(\S+): (.*)", line)
    if not m:
        continue
    t, event, rest = float(m.group(1)), m.group(2), m.group(3)
    if event == "io_uring:io_uring_submit_req":
        if re.search(r"opcode WRITE", rest):
            submitted[re.search(r"req (\S+),", rest).group(1)] = t
    elif event == "io_uring:io_uring_complete":
        req = re.search(r"req (\S+),", rest).group(1)
        if req in submitted:
            uring.append((t - submitted.pop(req)) * 1e3)
    elif event == "block:block_rq_issue":
        sector = re.search(r"(\d+) \+ \d+", rest)
        if sector:
            issued[sector.group(1)] = t
    elif event == "block:block_rq_complete":
        sector = re.search(r"(\d+) \+ \d+", rest)
        if sector and sector.group(1) in issued:
            block.append((t - issued.pop(sector.group(1))) * 1e3)


def quantiles(xs):
    if not xs:
        return "none"
    xs = sorted(xs)
    n = len(xs)
    return "n %5d  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f ms" % (
        n, xs[n // 2], xs[int(n * 0.9)], xs[int(n * 0.99)], xs[min(n - 1, int(n * 0.999))])


print("io_uring write, taken to completion posted:", quantiles(uring))
print("block request, issue to completion:        ", quantiles(block))
