"""A confluent-kafka group member run as its own process, so a test can
kill -9 it (no LeaveGroup). Prints JSON lines on stdout:
{"event": "assigned", "partitions": [..], "member_id": id} whenever the
assignment changes, {"event": "revoked", "partitions": [..], "lost": bool}
from the rebalance callbacks, and
{"event": "record", "partition": p, "offset": o, "value": v} for every
record, printed after its offset was committed (at-least-once).

usage: python group_member.py BOOTSTRAP TOPIC GROUP NAME [STRATEGY [INSTANCE_ID]]
(an INSTANCE_ID makes it a static member: group.instance.id)"""

import json
import sys

from confluent_kafka import Consumer, KafkaError, TopicPartition

bootstrap, topic, group, name = sys.argv[1:5]
strategy = sys.argv[5] if len(sys.argv) > 5 else "range"
instance = sys.argv[6] if len(sys.argv) > 6 else None


def say(**kw):
    print(json.dumps(kw), flush=True)


config = {
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "client.id": name,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "partition.assignment.strategy": strategy,
    "fetch.wait.max.ms": 100,
}
if instance:
    config["group.instance.id"] = instance
c = Consumer(config)


def revoked(lost):
    def callback(_consumer, partitions):
        say(event="revoked", partitions=sorted(tp.partition for tp in partitions), lost=lost)

    return callback


# The client applies (un)assignments itself after each callback returns.
c.subscribe([topic], on_revoke=revoked(False), on_lost=revoked(True))
last = None
while True:
    m = c.poll(0.2)
    # librdkafka applies a new assignment after the rebalance callback
    # returns, so report it from here, whenever it changed.
    now = sorted(tp.partition for tp in c.assignment())
    if now != last:
        last = now
        say(event="assigned", partitions=now, member_id=c.memberid())
    if m is None:
        continue
    if m.error():
        if m.error().code() != KafkaError._PARTITION_EOF:
            say(event="error", error=str(m.error()))
        continue
    c.commit(offsets=[TopicPartition(m.topic(), m.partition(), m.offset() + 1)], asynchronous=False)
    say(event="record", partition=m.partition(), offset=m.offset(), value=m.value().decode())
