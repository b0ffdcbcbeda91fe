//! Per-core counters and HdrHistogram latencies. Each core updates its own
//! (no atomics, no sharing); the admin endpoint gathers a [`MetricsSnapshot`]
//! from every core and merges them.

use hdrhistogram::Histogram;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// Latencies are recorded in microseconds up to one hour, 3 significant digits.
const LATENCY_MAX_US: u64 = 3_600_000_000;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

#[derive(Clone, Debug)]
pub struct ApiStats {
    pub requests: u64,
    pub errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// From the frame parsed to its handler's first run: the wait in the
    /// core's run queue (Kafka's RequestQueueTimeMs).
    pub queue_us: Histogram<u64>,
    /// From the handler's first run to its reply.
    pub latency_us: Histogram<u64>,
    /// From the frame parsed to the response handed to the socket, which
    /// includes the queue wait and waiting for the responses to earlier
    /// requests on the same connection (Kafka's TotalTimeMs, less the time
    /// before the read).
    pub total_us: Histogram<u64>,
}

impl Default for ApiStats {
    fn default() -> Self {
        ApiStats {
            requests: 0,
            errors: 0,
            bytes_in: 0,
            bytes_out: 0,
            queue_us: new_histogram(),
            latency_us: new_histogram(),
            total_us: new_histogram(),
        }
    }
}

impl ApiStats {
    fn merge(&mut self, o: &ApiStats) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        let _ = self.queue_us.add(&o.queue_us);
        let _ = self.latency_us.add(&o.latency_us);
        let _ = self.total_us.add(&o.total_us);
    }
}

#[derive(Default)]
pub struct Metrics {
    apis: RefCell<BTreeMap<&'static str, ApiStats>>,
    pub connections_open: Cell<u64>,
    pub connections_total: Cell<u64>,
    pub frames_rejected: Cell<u64>,
    produce_records: Cell<u64>,
    produce_bytes: Cell<u64>,
    fetch_bytes: Cell<u64>,
    isr_shrinks: Cell<u64>,
    isr_expands: Cell<u64>,
}

impl Metrics {
    /// A leader on this core proposed an ISR change.
    pub fn record_isr_change(&self, shrink: bool) {
        let c = if shrink { &self.isr_shrinks } else { &self.isr_expands };
        c.set(c.get() + 1);
    }

    /// A handler replied: it waited `queue_us` to start and ran for
    /// `latency_us` (see [`ApiStats`]).
    pub fn record_request(
        &self,
        api: &'static str,
        bytes_in: usize,
        bytes_out: usize,
        error: bool,
        queue_us: u64,
        latency_us: u64,
    ) {
        let mut apis = self.apis.borrow_mut();
        let s = apis.entry(api).or_default();
        s.requests += 1;
        s.errors += error as u64;
        s.bytes_in += bytes_in as u64;
        s.bytes_out += bytes_out as u64;
        let _ = s.queue_us.record(queue_us.clamp(1, LATENCY_MAX_US));
        let _ = s.latency_us.record(latency_us.clamp(1, LATENCY_MAX_US));
    }

    /// A response was written: `total_us` since its request's frame was parsed.
    pub fn record_request_total(&self, api: &'static str, total_us: u64) {
        let mut apis = self.apis.borrow_mut();
        let _ = apis.entry(api).or_default().total_us.record(total_us.clamp(1, LATENCY_MAX_US));
    }

    pub fn record_produce(&self, records: u64, bytes: u64) {
        self.produce_records.set(self.produce_records.get() + records);
        self.produce_bytes.set(self.produce_bytes.get() + bytes);
    }

    pub fn record_fetch(&self, bytes: u64) {
        self.fetch_bytes.set(self.fetch_bytes.get() + bytes);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            apis: self.apis.borrow().iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            connections_open: self.connections_open.get(),
            connections_total: self.connections_total.get(),
            frames_rejected: self.frames_rejected.get(),
            produce_records: self.produce_records.get(),
            produce_bytes: self.produce_bytes.get(),
            fetch_bytes: self.fetch_bytes.get(),
            isr_shrinks: self.isr_shrinks.get(),
            isr_expands: self.isr_expands.get(),
            ..Default::default()
        }
    }
}

/// Per-partition figures for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct PartitionFigures {
    pub topic: String,
    pub partition: i32,
    pub log_start: i64,
    pub high_watermark: i64,
    pub log_end: i64,
    pub size_bytes: u64,
    pub segments: usize,
    /// Cluster mode, on the partition's leader: replicas and ISR sizes, and
    /// each follower's lag in offsets behind the leader's end.
    pub leader: Option<LeaderFigures>,
}

#[derive(Clone, Debug, Default)]
pub struct LeaderFigures {
    pub replicas: usize,
    pub isr: usize,
    pub follower_lag: Vec<(i32, i64)>,
}

/// Everything one core reports; `Send` so it can cross cores.
#[derive(Clone, Debug, Default)]
pub struct MetricsSnapshot {
    pub apis: BTreeMap<String, ApiStats>,
    pub connections_open: u64,
    pub connections_total: u64,
    pub frames_rejected: u64,
    pub produce_records: u64,
    pub produce_bytes: u64,
    pub fetch_bytes: u64,
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bytes: u64,
    /// Ack journals (`crate::journal`): appends acknowledged from them,
    /// appends that found no room and waited for their writes, and bytes
    /// in use.
    pub journal_held: u64,
    pub journal_refused: u64,
    pub journal_bytes: u64,
    pub partitions: Vec<PartitionFigures>,
    /// fdatasync latency and disk write counts of the engine, per core merged.
    pub fsync_us: Option<Histogram<u64>>,
    /// Segment write latency (submission to completion), per core merged.
    pub write_us: Option<Histogram<u64>>,
    pub disk_writes: u64,
    pub disk_write_bytes: u64,
    pub disk_errors: u64,
    /// Write rounds submitted while their log's fdatasync was in flight.
    pub disk_rounds_beside_fsync: u64,
    /// Segments rolled into the file of a segment retention deleted.
    pub segments_recycled: u64,
    /// I/O doorbell rings, and rings that found no bell armed
    /// (`spindle_engine::storage::doorbell`).
    pub doorbell_rings: u64,
    pub doorbell_missed: u64,
    /// Of the rings, those made because a busy core had disk I/O in flight
    /// without polling (`doorbell::nudge`).
    pub doorbell_nudges: u64,
}

impl MetricsSnapshot {
    pub fn merge(&mut self, o: MetricsSnapshot) {
        for (k, v) in o.apis {
            self.apis.entry(k).or_default().merge(&v);
        }
        self.connections_open += o.connections_open;
        self.connections_total += o.connections_total;
        self.frames_rejected += o.frames_rejected;
        self.produce_records += o.produce_records;
        self.produce_bytes += o.produce_bytes;
        self.fetch_bytes += o.fetch_bytes;
        self.isr_shrinks += o.isr_shrinks;
        self.isr_expands += o.isr_expands;
        self.cache_hits += o.cache_hits;
        self.cache_misses += o.cache_misses;
        self.cache_bytes += o.cache_bytes;
        self.journal_held += o.journal_held;
        self.journal_refused += o.journal_refused;
        self.journal_bytes += o.journal_bytes;
        self.partitions.extend(o.partitions);
        for (mine, theirs) in [(&mut self.fsync_us, o.fsync_us), (&mut self.write_us, o.write_us)] {
            match (mine.as_mut(), theirs) {
                (Some(a), Some(b)) => {
                    let _ = a.add(&b);
                }
                (None, b) => *mine = b,
                _ => {}
            }
        }
        self.disk_writes += o.disk_writes;
        self.disk_write_bytes += o.disk_write_bytes;
        self.disk_errors += o.disk_errors;
        self.disk_rounds_beside_fsync += o.disk_rounds_beside_fsync;
        self.segments_recycled += o.segments_recycled;
        self.doorbell_rings += o.doorbell_rings;
        self.doorbell_missed += o.doorbell_missed;
        self.doorbell_nudges += o.doorbell_nudges;
    }

    /// Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP spindle_requests_total Kafka requests handled, by API.\n# TYPE spindle_requests_total counter"
        );
        for (api, s) in &self.apis {
            let _ = writeln!(o, "spindle_requests_total{{api=\"{api}\"}} {}", s.requests);
        }
        let _ = writeln!(o, "# HELP spindle_request_errors_total Requests answered with an error, by API.\n# TYPE spindle_request_errors_total counter");
        for (api, s) in &self.apis {
            let _ = writeln!(o, "spindle_request_errors_total{{api=\"{api}\"}} {}", s.errors);
        }
        let _ = writeln!(o, "# HELP spindle_request_bytes_total Request and response bytes, by API.\n# TYPE spindle_request_bytes_total counter");
        for (api, s) in &self.apis {
            let _ = writeln!(o, "spindle_request_bytes_total{{api=\"{api}\",direction=\"in\"}} {}", s.bytes_in);
            let _ = writeln!(o, "spindle_request_bytes_total{{api=\"{api}\",direction=\"out\"}} {}", s.bytes_out);
        }
        let per_api: [(&str, &str, fn(&ApiStats) -> &Histogram<u64>); 3] = [
            (
                "spindle_request_queue_latency_seconds",
                "From a request read to its handler's first run (the wait in the core's run queue), by API.",
                |s| &s.queue_us,
            ),
            (
                "spindle_request_latency_seconds",
                "From a request's handler's first run to its reply, by API.",
                |s| &s.latency_us,
            ),
            (
                "spindle_request_total_latency_seconds",
                "From a request read to its response written, including the wait behind earlier responses on the connection, by API.",
                |s| &s.total_us,
            ),
        ];
        for (name, help, hist) in per_api {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} summary");
            for (api, s) in &self.apis {
                for q in [0.5, 0.9, 0.99, 0.999] {
                    let v = hist(s).value_at_quantile(q) as f64 / 1e6;
                    let _ = writeln!(o, "{name}{{api=\"{api}\",quantile=\"{q}\"}} {v}");
                }
                let _ = writeln!(o, "{name}_count{{api=\"{api}\"}} {}", hist(s).len());
            }
        }
        let scalars = [
            ("spindle_connections_open", "gauge", "Open client connections.", self.connections_open),
            ("spindle_connections_total", "counter", "Accepted client connections.", self.connections_total),
            (
                "spindle_frames_rejected_total",
                "counter",
                "Connections closed for a malformed or oversized frame.",
                self.frames_rejected,
            ),
            ("spindle_produce_records_total", "counter", "Records appended.", self.produce_records),
            ("spindle_produce_bytes_total", "counter", "Record batch bytes appended.", self.produce_bytes),
            ("spindle_fetch_bytes_total", "counter", "Record batch bytes served to consumers.", self.fetch_bytes),
            ("spindle_cache_hits_total", "counter", "Reads served from the batch cache.", self.cache_hits),
            ("spindle_cache_misses_total", "counter", "Reads that went to disk.", self.cache_misses),
            ("spindle_cache_bytes", "gauge", "Bytes held by the batch caches.", self.cache_bytes),
            (
                "spindle_ack_journal_appends_total",
                "counter",
                "Appends acknowledged once copied to the ack journal, before their disk write.",
                self.journal_held,
            ),
            (
                "spindle_ack_journal_full_total",
                "counter",
                "Appends that found the ack journal full and waited for their disk write.",
                self.journal_refused,
            ),
            (
                "spindle_ack_journal_bytes",
                "gauge",
                "Bytes of the ack journals holding appends not yet written.",
                self.journal_bytes,
            ),
            ("spindle_disk_writes_total", "counter", "Direct-I/O writes to segment files.", self.disk_writes),
            (
                "spindle_disk_write_rounds_beside_fdatasync_total",
                "counter",
                "Write rounds submitted while an fdatasync of the same log was in flight (only when the log is backlogged).",
                self.disk_rounds_beside_fsync,
            ),
            (
                "spindle_segments_recycled_total",
                "counter",
                "Segments rolled into the file of a segment that retention deleted (log.segment.recycle.enable).",
                self.segments_recycled,
            ),
            (
                "spindle_disk_write_bytes_total",
                "counter",
                "Bytes written to segment files (sector-padded).",
                self.disk_write_bytes,
            ),
            ("spindle_disk_errors_total", "counter", "Failed segment writes and fdatasyncs.", self.disk_errors),
            (
                "spindle_io_doorbell_rings_total",
                "counter",
                "Times a core had the disk requests it had queued submitted at once.",
                self.doorbell_rings,
            ),
            (
                "spindle_io_doorbell_missed_total",
                "counter",
                "Doorbell rings that found no bell armed (those requests went at the next poll).",
                self.doorbell_missed,
            ),
            (
                "spindle_io_doorbell_nudges_total",
                "counter",
                "Doorbell rings made because a busy core had disk I/O in flight without polling.",
                self.doorbell_nudges,
            ),
        ];
        for (name, kind, help, v) in scalars {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        let latencies = [
            ("spindle_fsync_latency_seconds", "fdatasync latency of segment files.", &self.fsync_us),
            (
                "spindle_disk_write_latency_seconds",
                "Latency of each segment write, submission to completion.",
                &self.write_us,
            ),
        ];
        for (name, help, h) in latencies {
            let Some(h) = h else { continue };
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} summary");
            for q in [0.5, 0.9, 0.99, 0.999] {
                let _ = writeln!(o, "{name}{{quantile=\"{q}\"}} {}", h.value_at_quantile(q) as f64 / 1e6);
            }
            let _ = writeln!(o, "{name}_count {}", h.len());
        }
        let ratio = if self.cache_hits + self.cache_misses == 0 {
            0.0
        } else {
            self.cache_hits as f64 / (self.cache_hits + self.cache_misses) as f64
        };
        let _ = writeln!(o, "# HELP spindle_cache_hit_ratio Fraction of reads served from memory.\n# TYPE spindle_cache_hit_ratio gauge\nspindle_cache_hit_ratio {ratio}");
        let per_partition: [(&str, &str, fn(&PartitionFigures) -> String); 4] = [
            ("spindle_partition_log_end_offset", "Log end offset.", |p| p.log_end.to_string()),
            ("spindle_partition_high_watermark", "High watermark.", |p| p.high_watermark.to_string()),
            ("spindle_partition_log_start_offset", "Log start offset.", |p| p.log_start.to_string()),
            ("spindle_partition_size_bytes", "Bytes of record batches on disk.", |p| p.size_bytes.to_string()),
        ];
        for (name, help, get) in per_partition {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
            for p in &self.partitions {
                let _ = writeln!(o, "{name}{{topic=\"{}\",partition=\"{}\"}} {}", p.topic, p.partition, get(p));
            }
        }
        // Replication (cluster mode): what this broker leads.
        let led: Vec<(&PartitionFigures, &LeaderFigures)> =
            self.partitions.iter().filter_map(|p| p.leader.as_ref().map(|l| (p, l))).collect();
        let under = led.iter().filter(|(_, l)| l.isr < l.replicas).count();
        let _ = writeln!(o, "# HELP spindle_under_replicated_partitions Partitions led here whose ISR is smaller than their replica set.\n# TYPE spindle_under_replicated_partitions gauge\nspindle_under_replicated_partitions {under}");
        let _ = writeln!(o, "# HELP spindle_isr_shrinks_total ISR shrinks proposed by leaders here.\n# TYPE spindle_isr_shrinks_total counter\nspindle_isr_shrinks_total {}", self.isr_shrinks);
        let _ = writeln!(o, "# HELP spindle_isr_expands_total ISR expansions proposed by leaders here.\n# TYPE spindle_isr_expands_total counter\nspindle_isr_expands_total {}", self.isr_expands);
        let _ = writeln!(o, "# HELP spindle_partition_isr_size In-sync replicas of a partition led here.\n# TYPE spindle_partition_isr_size gauge");
        for (p, l) in &led {
            let _ = writeln!(
                o,
                "spindle_partition_isr_size{{topic=\"{}\",partition=\"{}\"}} {}",
                p.topic, p.partition, l.isr
            );
        }
        let _ = writeln!(o, "# HELP spindle_follower_lag_offsets How far each follower is behind the leader's end (-1: not heard from in this leader epoch).\n# TYPE spindle_follower_lag_offsets gauge");
        for (p, l) in &led {
            for (follower, lag) in &l.follower_lag {
                let _ = writeln!(
                    o,
                    "spindle_follower_lag_offsets{{topic=\"{}\",partition=\"{}\",follower=\"{follower}\"}} {lag}",
                    p.topic, p.partition
                );
            }
        }
        o
    }
}
