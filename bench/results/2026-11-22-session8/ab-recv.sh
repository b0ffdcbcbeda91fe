#!/usr/bin/env bash
# A/B of the connection read path: A = zeroed read buffer (06f64f9),
# B = non-blocking recv into spare capacity. Binaries in /tmp; broker CPU 1,
# generator CPU 0; acks=1, linger 0.3 ms; alternating builds.
cd "$(git rev-parse --show-toplevel)"
B=target/release/spindle-bench
date -u
$B limits --dir target/bench-tmp --repeat 3 2>&1 | sed -n '/^measurement/,$p'
for pair in 1 2 3; do
  for build in base recv; do
    for rate in max 450MiB; do
      echo "### pair $pair build $build acks=1 rate $rate"
      SPINDLE=/tmp/spindle-$build TAIL=14 LINGER=0.3ms bench/results/2026-11-22-session7/lat.sh $rate 1 2>&1 \
        | bench/results/2026-11-22-session7/summ.sh | grep -v '^$'
    done
  done
done
$B limits --dir target/bench-tmp --repeat 1 --tcp-secs 1 2>&1 | sed -n '/^measurement/,$p'
date -u
