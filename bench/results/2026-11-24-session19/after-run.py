"""After one delete-topic.sh run: how long the retention run that dropped
b's segments took (first to last partition's "retention deleted segments"
log line) and topic a's p99 per second from t=8 to t=30."""
import json, re
from datetime import datetime
times = []
for line in open("target/bench-tmp/delete-topic.log"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    if "retention deleted segments" in line and 'topic="b"' in line:
        times.append(datetime.fromisoformat(line.split()[0].rstrip("Z")))
if times:
    print("    b's segments dropped by %d partitions within %.0f ms" % (len(times), (max(times) - min(times)).total_seconds() * 1e3))
tl = json.load(open("target/bench-tmp/delete-topic-out/summary.json"))["timeline"]
print("    a's p99 by second, t=8-30 (ms): " + " ".join("%.1f" % x["p99_ms"] for x in tl if 8 <= x["t"] <= 30))
