#!/usr/bin/env python3
"""Write rounds of the engine, from an io_uring tracepoint capture.

How RESULTS.md's "where the append time goes" numbers were made:

  perf record -e io_uring:io_uring_submit_req -e io_uring:io_uring_complete \
      -o /tmp/trace.data -- target/release/spindle-bench engine --dir DIR --total-mib 256
  perf script -i /tmp/trace.data > /tmp/trace.txt
  bench/io-trace-rounds.py /tmp/trace.txt

A data write is a WRITE/WRITE_FIXED whose result is over 100 bytes (glommio
also writes 8 bytes to eventfds). Writes submitted within 50 us of each other
form one round (the engine submits a round's chunks together with join_all).
Reported: writes per round, bytes per round, how long rounds take, the time
with no data write in flight between rounds, and the spacing of completions
inside a round (equal spacing of about one write's duration means the
filesystem ran the round's writes one after another).
"""
import statistics
import sys


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]


def main(path):
    submitted, writes, fsyncs = {}, [], []
    for line in open(path):
        f = line.split()
        if len(f) < 9:
            continue
        try:
            t = float(f[3].rstrip(':'))
        except ValueError:
            continue
        req = f[8].rstrip(',')
        if 'io_uring_submit_req' in f[4]:
            submitted[req] = (t, line.split('opcode ')[1].split(',')[0])
        elif 'io_uring_complete' in f[4] and req in submitted:
            t0, op = submitted.pop(req)
            res = int(line.split('result ')[1].split(',')[0])
            if op.startswith('WRITE') and res > 100:
                writes.append((t0, t, res))
            elif op == 'FSYNC':
                fsyncs.append((t0, t))
    if not writes:
        sys.exit('no data writes in the trace')
    writes.sort()
    rounds, cur = [], [writes[0]]
    for w in writes[1:]:
        if w[0] - cur[-1][0] < 50e-6:
            cur.append(w)
        else:
            rounds.append(cur)
            cur = [w]
    rounds.append(cur)
    kib = [sum(w[2] for w in r) / 1024 for r in rounds]
    dur = [(max(w[1] for w in r) - r[0][0]) * 1e6 for r in rounds]
    gap = [max(0.0, rounds[i + 1][0][0] - max(w[1] for w in rounds[i])) * 1e6 for i in range(len(rounds) - 1)]
    span = max(w[1] for w in writes) - writes[0][0]
    lat = [(w[1] - w[0]) * 1e6 for w in writes]
    print(f'data writes: {len(writes)}, avg {statistics.mean(w[2] for w in writes) / 1024:.0f} KiB, '
          f'latency p50 {statistics.median(lat):.0f} us p90 {pct(lat, 0.9):.0f} us')
    print(f'rounds: {len(rounds)}, writes/round {statistics.mean(len(r) for r in rounds):.2f}, '
          f'KiB/round p10 {pct(kib, 0.1):.0f} p50 {statistics.median(kib):.0f} p90 {pct(kib, 0.9):.0f} '
          f'mean {statistics.mean(kib):.0f}')
    print(f'round duration us p50 {statistics.median(dur):.0f} p90 {pct(dur, 0.9):.0f}')
    if gap:
        print(f'no write in flight between rounds: p50 {statistics.median(gap):.0f} us, p90 {pct(gap, 0.9):.0f} us, '
              f'total {sum(gap) / 1e6:.3f} s of {span:.3f} s ({100 * sum(gap) / 1e6 / span:.0f}%)')
    spacing = []
    for r in rounds:
        c = sorted(w[1] for w in r)
        spacing += [(c[i + 1] - c[i]) * 1e6 for i in range(len(c) - 1)]
    if spacing:
        print(f'completion spacing inside rounds: p50 {statistics.median(spacing):.0f} us '
              f'(one 1 MiB write takes p50 {statistics.median(lat):.0f} us)')
    if fsyncs:
        fl = [(b - a) * 1e6 for a, b in fsyncs]
        print(f'fdatasync: {len(fsyncs)}, p50 {statistics.median(fl):.0f} us, p90 {pct(fl, 0.9):.0f} us')


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit('usage: io-trace-rounds.py PERF_SCRIPT_OUTPUT')
    main(sys.argv[1])
