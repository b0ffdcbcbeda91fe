#!/usr/bin/env bash
# Broker CPU seconds (user+sys from /proc) for one 13 s acks=1 run at a fixed
# rate, per build; broker CPU 1, generator CPU 0; alternating builds.
cd "$(git rev-parse --show-toplevel)"
RATE=${RATE:-450MiB}
for pair in 1 2 3; do
  for build in base recv; do
    D=target/bench-tmp/broker-cpu; rm -rf $D; mkdir -p target/bench-tmp
    /tmp/spindle-$build serve --data-dir $D --listen 127.0.0.1:39292 --admin-listen 127.0.0.1:39293 --cores 1-1 > target/bench-tmp/broker-cpu.log 2>&1 &
    SP=$!
    for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/39292) 2>/dev/null && break; sleep 0.1; done
    read -r u0 s0 < <(awk '{print $14, $15}' /proc/$SP/stat)
    out=$(target/release/spindle-bench produce --bootstrap 127.0.0.1:39292 --topic t --acks 1 --partitions 8 --record-size 1024 \
      --batch-size 64KiB --linger 0.3ms --producers 2 --duration 10s --warmup 3s --rate $RATE --cores 0-0 2>&1 | grep -E "^produced" | grep -oE "[0-9.]+ MiB/s")
    read -r u1 s1 < <(awk '{print $14, $15}' /proc/$SP/stat)
    tck=$(getconf CLK_TCK)
    echo "pair $pair build $build rate $RATE: $out; broker user $(( (u1-u0)*1000/tck )) ms sys $(( (s1-s0)*1000/tck )) ms over the 13 s run"
    kill $SP; wait $SP; rm -rf $D
  done
done
