#!/usr/bin/env bash
# The RESULTS "Cluster" runs again: three brokers (--cores 1 each) on this
# host's two cores and one disk, the same commands, plus a topic whose
# leaders are spread over the three brokers (the generator routes to leaders).
# BROKER_CPUS="1-1 0-0 1-1" pins broker i to the i-th CPU list instead
# (`--cores 1` puts all three on CPU 0).
cd "$(git rev-parse --show-toplevel)"
S=target/release/spindle; B=target/release/spindle-bench; PY=target/interop-venv/bin/python
W=target/bench-tmp/cluster; rm -rf $W; mkdir -p $W
date -u; git log --oneline -1
$B limits --dir target/bench-tmp --repeat 1 2>&1 | grep -E "^(write-1m-qd8|append-1m-qd8|fdatasync-append p99)"
V=0@127.0.0.1:19190,1@127.0.0.1:19191,2@127.0.0.1:19192
PIDS=()
read -r -a CPUS <<< "${BROKER_CPUS:-1 1 1}"
echo "broker --cores: ${CPUS[*]}"
for i in 0 1 2; do
  $S serve --node-id $i --data-dir $W/d$i --listen 127.0.0.1:1909$i --admin-listen 127.0.0.1:1964$i \
    --controller-quorum-voters $V --cores ${CPUS[$i]} > $W/b$i.log 2>&1 &
  PIDS+=($!)
done
$PY - <<'PY'
import time
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": "127.0.0.1:19090,127.0.0.1:19091,127.0.0.1:19092"})
deadline = time.time() + 60
while True:
    try:
        if len(a.list_topics(timeout=5).brokers) == 3:
            break
    except Exception:
        pass
    if time.time() > deadline:
        raise SystemExit("cluster not up")
    time.sleep(0.5)
topics = [
    NewTopic("b3", num_partitions=8, replication_factor=-1, replica_assignment=[[0, 1, 2]] * 8,
             config={"min.insync.replicas": "2"}),
    NewTopic("b1", num_partitions=8, replication_factor=-1, replica_assignment=[[0]] * 8),
    NewTopic("spread", num_partitions=8, replication_factor=3, config={"min.insync.replicas": "2"}),
]
for t, f in a.create_topics(topics, operation_timeout=30, request_timeout=30).items():
    f.result(timeout=60)
# wait until every partition has a leader and the RF 3 topics a full ISR
deadline = time.time() + 60
while time.time() < deadline:
    md = a.list_topics(timeout=5).topics
    ok = all(md[t].error is None and len(md[t].partitions) == 8 and all(
        p.leader >= 0 and len(p.isrs) == (1 if t == "b1" else 3) for p in md[t].partitions.values())
        for t in ("b3", "b1", "spread"))
    if ok:
        print("leaders of spread:", sorted(p.leader for p in md["spread"].partitions.values()))
        break
    time.sleep(0.5)
else:
    raise SystemExit("topics not settled")
PY
for run in "b3 all" "b3 1" "b1 all" "spread all" "b3 all" "spread all"; do
  set -- $run
  echo "### topic $1 acks=$2"
  $B produce --bootstrap 127.0.0.1:19090 --topic $1 --acks $2 --partitions 8 --record-size 1024 \
    --batch-size 64KiB --linger 2ms --producers 2 --duration 10s --warmup 3s --rate max 2>&1 | grep -E "^produced|ack latency"
done
kill "${PIDS[@]}"; wait
rm -rf $W
date -u
