"""Reads a `perf script` dump made by trace.sh: usage
trace-fdatasync.py TRACE [N...].

Prints the gaps around each fdatasync: from the last segment write's
completion to the fdatasync's submission, from its submission to its
completion, and from its completion to the next segment write's submission.
Times are when the kernel saw each event. Then, for each N, the events from
just before the Nth fdatasync completion to 1.5 ms after it, in ms relative
to it: SUB/CQE are io_uring submissions and completions (X: a negative
result), ISSUE/DONE block requests (size in 512-byte sectors), SW context
switches on the traced CPU."""
import re
import sys

WRITES = ("WRITE", "WRITE_FIXED")


def events(path):
    """(time in ms, command, description) of every event in the dump."""
    op_of_req = {}
    out = []
    for line in open(path):
        m = re.search(r"^\s*(\S+)\s+\d+\s+\[\d+\]\s+(\d+\.\d+):\s+(\S+):\s*(.*)$", line)
        if not m:
            continue
        comm, t, kind, rest = m.groups()
        t, kind = float(t) * 1000, kind.split(":")[-1]
        if kind == "io_uring_submit_req":
            req = re.search(r"req (\S+),", rest).group(1)
            op_of_req[req] = re.search(r"opcode (\S+),", rest).group(1)
            out.append((t, comm, "SUB " + op_of_req[req]))
        elif kind == "io_uring_complete":
            req = re.search(r"req (\S+),", rest).group(1)
            res = int(re.search(r"result (-?\d+)", rest).group(1))
            out.append((t, comm, f"CQE {op_of_req.get(req, '?') if res >= 0 else 'X'} {res}"))
        elif kind == "sched_switch":
            m2 = re.search(r"prev_comm=(\S+).*prev_state=(\S+).*next_comm=(\S+)", rest)
            out.append((t, comm, f"SW {m2.group(1)}[{m2.group(2)}] -> {m2.group(3)}"))
        else:
            m2 = re.search(r"254,0 (\S+) (?:\d+ )?\(\) \d+ \+ (\d+)", rest)
            if m2:
                what = "ISSUE " if "issue" in kind else "DONE  "
                out.append((t, comm, what + m2.group(1) + " " + m2.group(2)))
    return out


def quantiles(x):
    x = sorted(x)
    return f"n={len(x)} p50={x[len(x) // 2]:.3f} p90={x[int(len(x) * 0.9)]:.3f} sum={sum(x):.1f}ms"


def gaps(ev):
    drain, sync, after = [], [], []
    last_write_done = sync_submitted = sync_done = None
    for t, _, what in ev:
        kind, op = (what.split() + [""])[:2]
        if kind == "SUB" and op in WRITES and sync_done is not None:
            after.append(t - sync_done)
            sync_done = None
        elif kind == "CQE" and op in WRITES:
            last_write_done = t
        elif kind == "SUB" and op == "FSYNC":
            sync_submitted = t
            if last_write_done is not None:
                drain.append(t - last_write_done)
        elif kind == "CQE" and op == "FSYNC" and sync_submitted is not None:
            sync.append(t - sync_submitted)
            sync_done = t
    print("run", round(ev[-1][0] - ev[0][0], 1), "ms")
    print("last write CQE -> FSYNC SUB:", quantiles(drain))
    print("FSYNC SUB -> CQE:", quantiles(sync))
    print("FSYNC CQE -> next write SUB:", quantiles(after))


def window(ev, n):
    done = [i for i, e in enumerate(ev) if e[2].startswith("CQE FSYNC")]
    i = done[n]
    t0 = ev[i][0]
    print("----")
    k = max(i - 12, 0)
    while k < len(ev) and ev[k][0] < t0 + 1.5:
        print(f"{ev[k][0] - t0:8.3f} {ev[k][1][:16]:16} {ev[k][2]}")
        k += 1


if __name__ == "__main__":
    ev = events(sys.argv[1])
    gaps(ev)
    for n in map(int, sys.argv[2:]):
        window(ev, n)
