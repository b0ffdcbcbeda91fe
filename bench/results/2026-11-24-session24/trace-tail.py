"""Reads `perf script` output of trace-tail.sh and relates the broker's
slow io_uring writes to block requests, jbd2 commits and the dio
completion work items."""
import re
import sys

sub, writes = {}, []          # io_uring writes: (submit, complete)
issued, block = {}, []        # block requests: (issue, complete, sectors)
commits, commit = [], None    # jbd2 commits: (start, locking, end)
queued, running, dio = {}, {}, []  # dio work: (queued, started, ended)
punted = []                   # requests io_uring handed to io-wq workers
for line in sys.stdin:
    m = re.match(r"\s*(\S+)\s+(\d+)(?:/\d+)?\s+\[(\d+)\]\s+(\d+\.\d+):\s+(\S+):\s*(.*)", line)
    if not m:
        continue
    comm, pid, cpu, t, ev, rest = m.group(1), m.group(2), int(m.group(3)), float(m.group(4)) * 1e3, m.group(5), m.group(6)
    if ev.startswith("io_uring:") and not (comm.startswith("spindle-") or comm.startswith("iou-wrk") or comm.startswith("kworker")):
        continue  # another process's ring (the generator's)
    if ev == "io_uring:io_uring_submit_req" and "opcode WRITE" in rest:
        sub[re.search(r"req (\S+),", rest).group(1)] = t
    elif ev == "io_uring:io_uring_queue_async_work":
        punted.append(t)
    elif ev == "io_uring:io_uring_complete":
        r = re.search(r"req (\S+),", rest).group(1)
        if r in sub:
            writes.append((sub.pop(r), t))
    elif ev == "block:block_rq_issue":
        s = re.search(r"(\d+) \+ (\d+)", rest)
        if s and " W" in rest:
            issued[s.group(1)] = (t, int(s.group(2)))
    elif ev == "block:block_rq_complete":
        s = re.search(r"(\d+) \+ (\d+)", rest)
        if s and s.group(1) in issued:
            t0, n = issued.pop(s.group(1))
            block.append((t0, t, n))
    elif ev == "jbd2:jbd2_start_commit":
        commit = [t, None]
    elif ev == "jbd2:jbd2_commit_locking" and commit:
        commit[1] = t
    elif ev == "jbd2:jbd2_end_commit" and commit:
        commits.append((commit[0], commit[1], t))
        commit = None
    elif ev.startswith("workqueue:") and "iomap_dio_complete_work" in rest or (ev == "workqueue:workqueue_queue_work" and "dio/" in rest):
        w = re.search(r"work struct[= ](0x[0-9a-f]+)", rest)
        if not w:
            continue
        w = w.group(1)
        if ev == "workqueue:workqueue_queue_work":
            queued[w] = t
        elif ev == "workqueue:workqueue_execute_start" and w in queued:
            running[w] = (queued.pop(w), t)
        elif ev == "workqueue:workqueue_execute_end" and w in running:
            q, s = running.pop(w)
            dio.append((q, s, t))


def q(xs):
    if not xs:
        return "none"
    xs = sorted(xs)
    n = len(xs)
    return "n %5d  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms" % (
        n, xs[n // 2], xs[int(n * 0.9)], xs[int(n * 0.99)], xs[min(n - 1, int(n * 0.999))], xs[-1])


print("io_uring writes, submit to complete:", q([c - s for s, c in writes]))
print("block writes, issue to complete:    ", q([c - s for s, c, _ in block]))
print("block write sizes (KiB): p50 %d max %d" % (sorted(n for *_, n in block)[len(block) // 2] // 2, max(n for *_, n in block) // 2) if block else "")
print("dio work, queued to started:        ", q([s - qq for qq, s, _ in dio]))
print("dio work, running:                  ", q([e - s for _, s, e in dio]))
print("requests punted to io-wq workers: %d" % len(punted))
print("jbd2 commits: %d; durations %s" % (len(commits), ", ".join("%.1f (locked %.1f)" % (e - s, (e - l) if l else 0) for s, l, e in commits)))
slow = [(s, c) for s, c in writes if c - s > 1.0]
in_commit = sum(1 for s, c in slow if any(cs < c and s < ce for cs, _, ce in commits))
print("slow writes (> 1 ms): %d of %d; overlapping a jbd2 commit: %d" % (len(slow), len(writes), in_commit))
# Slow writes bunched in time?
if slow:
    t0 = writes[0][0]
    buckets = {}
    for s, c in slow:
        buckets[int((c - t0) // 10)] = buckets.get(int((c - t0) // 10), 0) + 1
    print("slow completions per 10 ms bucket (bucket: count):", " ".join("%d:%d" % kv for kv in sorted(buckets.items())))
    print("commit windows (ms from trace start):", " ".join("%.0f-%.0f" % (s - t0, e - t0) for s, _, e in commits))
