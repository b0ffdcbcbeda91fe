"""Reads `perf script` output of workqueue events (trace-dio-wq.sh) and
prints, for direct-I/O completions (iomap_dio_complete_work), the wait from
being queued to a kworker starting it, and the time the kworker spent on it."""
import re
import sys

queued, started, waits, runs, cpus = {}, {}, [], [], {}
for line in sys.stdin:
    m = re.search(r" (\d+\.\d+): +workqueue:(\S+): work struct[= ](0x[0-9a-f]+):?(.*)", line)
    if not m:
        continue
    t, event, work, rest = float(m.group(1)), m.group(2), m.group(3), m.group(4)
    if event == "workqueue_queue_work" and "iomap_dio_complete_work" in rest:
        queued[work] = t
        cpu = re.search(r" cpu=(\d+)", rest)
        if cpu:
            cpus[cpu.group(1)] = cpus.get(cpu.group(1), 0) + 1
    elif event == "workqueue_execute_start" and work in queued:
        waits.append((t - queued.pop(work)) * 1e3)
        started[work] = t
    elif event == "workqueue_execute_end" and work in started:
        runs.append((t - started.pop(work)) * 1e3)


def quantiles(xs):
    if not xs:
        return "none"
    xs = sorted(xs)
    n = len(xs)
    return "n %5d  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms" % (
        n, xs[n // 2], xs[int(n * 0.9)], xs[int(n * 0.99)], xs[min(n - 1, int(n * 0.999))], xs[-1])


print("dio completions queued, by CPU:", cpus)
print("queued -> kworker starts it:", quantiles(waits))
print("kworker running it:         ", quantiles(runs))
