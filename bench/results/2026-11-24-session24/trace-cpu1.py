"""Reads `perf script` output of trace-cpu1.sh: time on CPU 1 per task,
the longest stretches, and block requests that took over 1 ms with the
task that held CPU 1 when they completed."""
import re
import sys

on_cpu, start = None, None
per_task, stretches = {}, []
issued, slow = {}, []
for line in sys.stdin:
    m = re.match(r"\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+(\d+\.\d+):\s+(\S+):\s*(.*)", line)
    if not m:
        continue
    comm, cpu, t, ev, rest = m.group(1), int(m.group(3)), float(m.group(4)) * 1e3, m.group(5), m.group(6)
    if ev == "sched:sched_switch" and cpu == 1:
        prev = re.search(r"prev_comm=(.+?) prev_pid=(\d+)", rest)
        nxt = re.search(r"next_comm=(.+?) next_pid=(\d+)", rest)
        if start is not None and on_cpu is not None:
            per_task[on_cpu] = per_task.get(on_cpu, 0) + t - start
            stretches.append((t - start, on_cpu, start))
        on_cpu, start = re.sub(r"\d+$", "N", nxt.group(1)) if not nxt.group(1).startswith("spindle") else nxt.group(1), t
    elif ev == "block:block_rq_issue":
        s = re.search(r"(\d+) \+ (\d+)", rest)
        if s:
            issued[s.group(1)] = t
    elif ev == "block:block_rq_complete":
        s = re.search(r"(\d+) \+ (\d+)", rest)
        if s and s.group(1) in issued:
            d = t - issued.pop(s.group(1))
            if d > 1.0:
                slow.append((d, comm))
total = sum(per_task.values())
print("CPU 1 over %.0f ms:" % total)
for task, ms in sorted(per_task.items(), key=lambda kv: -kv[1])[:8]:
    longest = max(d for d, tk, _ in stretches if tk == task)
    print("  %-20s %6.1f ms (%4.1f%%), longest stretch %.2f ms, stretches over 1 ms: %d" % (
        task, ms, 100 * ms / total, longest, sum(1 for d, tk, _ in stretches if tk == task and d > 1.0)))
print("block requests over 1 ms: %d; completed while CPU 1 ran: %s" % (
    len(slow), ", ".join("%s %d" % kv for kv in sorted(
        {c: sum(1 for _, cc in slow if cc == c) for _, c in slow}.items(), key=lambda kv: -kv[1]))))
