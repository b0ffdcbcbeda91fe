#!/usr/bin/env bash
# usage: fio-sync-reference.sh ROUNDS
# The engine benchmark's fio reference (1 MiB direct writes, QD8, a fresh
# 2 GiB file, buffers on huge pages), alternately without fdatasync (the
# reference of issue 2) and with `--fdatasync=1` (an fdatasync after every
# 1 MiB write, with the other writes still in flight), as the engine is
# asked to sync every MiB.
ROUNDS=${1:-3}
cd "$(git rev-parse --show-toplevel)"
mkdir -p target/bench-tmp
for r in $(seq "$ROUNDS"); do
  for extra in "" "--fdatasync=1"; do
    printf "round %s %-15s" "$r" "${extra:-no fdatasync}"
    fio --name=ref --filename=target/bench-tmp/fio-sync-ref.dat --rw=write --bs=1M --iodepth=8 --direct=1 --size=2048M \
      --ioengine=io_uring --end_fsync=1 --iomem=mmaphuge:/mnt/huge/spindle-fio-buffers $extra --output-format=json \
      | python3 -c 'import json, sys; j = json.load(sys.stdin)["jobs"][0]; print(" %5.0f MiB/s" % (j["write"]["bw"] / 1024))'
    rm -f target/bench-tmp/fio-sync-ref.dat /mnt/huge/spindle-fio-buffers
  done
done
