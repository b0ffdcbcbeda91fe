"""The admin HTTP endpoint: Prometheus metrics that reflect real traffic,
and the health check."""

import urllib.error
import urllib.request

import pytest

from helpers import consume, create_topic, produce_all, producer, unique


def test_metrics_count_traffic_and_report_partition_offsets(broker):
    topic = create_topic(broker.bootstrap, unique("metrics"), partitions=2)
    recs = [(0 if i < 15 else 1, b"k%d" % i, b"v%d" % i, None, None) for i in range(25)]
    produce_all(producer(broker.bootstrap, acks="all"), topic, recs)
    got = consume(broker.bootstrap, topic, 2)
    assert [len(got[0]), len(got[1])] == [15, 10]

    status, text = broker.http_get("/metrics")
    assert status == 200
    assert "# TYPE spindle_requests_total counter" in text
    m = broker.metrics()
    assert m['spindle_requests_total{api="Produce"}'] > 0
    assert m['spindle_requests_total{api="Fetch"}'] > 0
    assert m['spindle_requests_total{api="CreateTopics"}'] > 0
    assert m["spindle_produce_records_total"] >= 25
    # acks=all waited for segment writes and an fdatasync: both latencies
    # are summaries with observations.
    for name in ("spindle_fsync_latency_seconds", "spindle_disk_write_latency_seconds"):
        assert f"# TYPE {name} summary" in text
        assert m[f"{name}_count"] > 0
        assert 0 < m[f'{name}{{quantile="0.99"}}'] < 60
    # Every Produce answered has a queue wait and a total time (read to
    # response written); the total is never shorter than the handler's own
    # time or the queue wait, each of which it contains.
    produce = '{api="Produce"'
    for name in ("spindle_request_total_latency_seconds", "spindle_request_queue_latency_seconds"):
        assert m[f"{name}_count{produce}}}"] == m[f"spindle_requests_total{produce}}}"]
    for q in ("0.5", "0.99"):
        total = m[f'spindle_request_total_latency_seconds{produce},quantile="{q}"}}']
        assert total >= m[f'spindle_request_latency_seconds{produce},quantile="{q}"}}'] > 0
        assert total >= m[f'spindle_request_queue_latency_seconds{produce},quantile="{q}"}}'] > 0
    for part, end in ((0, 15), (1, 10)):
        labels = f'{{topic="{topic}",partition="{part}"}}'
        assert m[f"spindle_partition_log_end_offset{labels}"] == end
        assert m[f"spindle_partition_high_watermark{labels}"] == end
        assert m[f"spindle_partition_log_start_offset{labels}"] == 0
        assert m[f"spindle_partition_size_bytes{labels}"] > 0


def test_healthz_and_unknown_paths(broker):
    assert broker.http_get("/healthz") == (200, "ok\n")
    with pytest.raises(urllib.error.HTTPError) as e:
        broker.http_get("/nope")
    assert e.value.code == 404
    req = urllib.request.Request(f"http://127.0.0.1:{broker.admin_port}/healthz", method="DELETE")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 405
