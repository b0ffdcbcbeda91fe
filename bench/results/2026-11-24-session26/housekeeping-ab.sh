#!/usr/bin/env bash
# usage: housekeeping-ab.sh PAIRS [RATE] [BATCH]
# The half-peak tail with the ack journal on, with the host's two busiest
# kernel threads on the broker's CPU 1 (as booted, affinity 0-1) and kept
# on CPU 0 (`taskset`: kdamond, the DAMON reclaim thread, and rcu_preempt,
# which ran for 1-3 ms at a time on CPU 1 in `perf sched` during a run).
# Alternates the two, PAIRS times; restores the affinity after. Each run is
# `shape.sh` of session 25 (the broker on CPU 1, the generator on CPU 0,
# 2 producers, 8 partitions, 16 in flight, 10 s after 3 s of warm-up).
PAIRS=${1:-3}; RATE=${2:-559MiB}; BATCH=${3:-64KiB}
cd "$(git rev-parse --show-toplevel)"
KD=$(pgrep -x kdamond.0); RCU=$(pgrep -x rcu_preempt)
trap 'taskset -p 3 $KD >/dev/null; taskset -p 3 $RCU >/dev/null' EXIT
echo "### $(date -u +%H:%M:%S) UTC, $(git rev-parse --short HEAD), kdamond $KD rcu_preempt $RCU, $RATE $BATCH"
for _ in $(seq "$PAIRS"); do
  for mode in both cpu0; do
    if [ $mode = cpu0 ]; then taskset -p 1 $KD >/dev/null; taskset -p 1 $RCU >/dev/null
    else taskset -p 3 $KD >/dev/null; taskset -p 3 $RCU >/dev/null; fi
    printf "%-5s " $mode
    bash bench/results/2026-11-24-session25/shape.sh $RATE 2 8 16 $BATCH | grep -E "ack latency|request_total" | tr '\n' ' ' | \
      sed 's/produce ack latency *(ms, [0-9]* samples)://; s/request_total_{api="Produce",quantile="0.99"}/produce p99/; s/request_total_{api="Produce",quantile="0.999"}/p99.9/'
    echo
  done
done
