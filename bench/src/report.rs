//! Markdown tables for `bench/RESULTS.md` from the JSON that `limits` and
//! `engine` write, with every engine number put against the limit it is
//! bounded by.

use crate::engine::{EngineResult, Mode};
use crate::limits::Limits;
use crate::{GB, MIB};
use std::fmt::Write;

/// Issue targets: append at >= 80% of the disk's direct-write bandwidth,
/// recovery of a 1 GiB unclean segment in < 2 s.
pub const APPEND_RATIO_TARGET: f64 = 0.80;
pub const RECOVERY_SECONDS_TARGET: f64 = 2.0;

pub fn limits_table(l: &Limits) -> String {
    let mut s = String::new();
    writeln!(s, "Disk jobs: {} in `{}`. `*` marks the headline rows.\n", l.disk_tool, l.dir).unwrap();
    writeln!(s, "| measurement | value | how |").unwrap();
    writeln!(s, "| --- | ---: | --- |").unwrap();
    for r in &l.rows {
        let v =
            if r.value >= 100.0 { format!("{:.0} {}", r.value, r.unit) } else { format!("{:.2} {}", r.value, r.unit) };
        writeln!(s, "| {} | {v} | {} |", r.name, r.how.replace('|', "\\|")).unwrap();
    }
    s
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

pub fn engine_table(l: Option<&Limits>, results: &[EngineResult]) -> String {
    let mut s = String::new();
    writeln!(s, "| run | result | against the limit |").unwrap();
    writeln!(s, "| --- | ---: | --- |").unwrap();
    for r in results {
        let o = &r.options;
        let tag = match o.mode {
            Mode::Append => format!(
                "append {} B batches, sync every {} MiB, {} MiB in flight",
                o.batch_bytes, o.sync_every_mib, o.inflight_mib
            ),
            Mode::ReadCached | Mode::ReadCold => {
                format!("{} {} B batches, fetch {} B", o.mode.name(), o.batch_bytes, o.fetch_bytes)
            }
            Mode::Recovery => "recovery".to_string(),
        };
        if let (Mode::Append, Some(a)) = (o.mode, &r.append) {
            let vs = match l {
                Some(l) => format!(
                    "{} of fio 1 MiB direct write ({:.0} MiB/s), target {}; {} of fio appending writes ({:.0} MiB/s)",
                    pct(a.mib_s / l.direct_write_1m_mib_s),
                    l.direct_write_1m_mib_s,
                    pct(APPEND_RATIO_TARGET),
                    pct(a.mib_s / l.direct_append_1m_mib_s),
                    l.direct_append_1m_mib_s
                ),
                None => String::new(),
            };
            writeln!(s, "| {tag}: throughput | {:.0} MiB/s | {vs} |", a.mib_s).unwrap();
            if let Some(f) = &r.reference {
                writeln!(
                    s,
                    "| {tag}: against fio run just before/after | {} | fio {:.0} MiB/s before, {:.0} after (`{}`) |",
                    pct(f.append_ratio),
                    f.before_mib_s,
                    f.after_mib_s,
                    f.command
                )
                .unwrap();
            }
            writeln!(
                s,
                "| {tag}: appends | {:.0} /s | {} appends in flight; latency p50 {:.0} us, p99 {:.0} us |",
                a.appends_s, a.inflight_appends, a.latency_p50_us, a.latency_p99_us
            )
            .unwrap();
            let cpu_vs = match l {
                Some(l) => format!(
                    "one memcpy + one CRC-32C pass of a MiB would cost {:.2} ms",
                    1000.0 * MIB / GB / l.memcpy_gb_s + 1000.0 * MIB / GB / l.crc32c_gb_s
                ),
                None => String::new(),
            };
            writeln!(
                s,
                "| {tag}: CPU per appended MiB | {:.2} ms | process (all threads); executor thread alone {:.2} ms; {cpu_vs} |",
                a.cpu_ms_per_mib, a.executor_cpu_ms_per_mib
            )
            .unwrap();
            writeln!(
                s,
                "| {tag}: durability | {} sync requests | wait_durable p50 {:.0} us, p99 {:.0} us; device saw {} writes (avg {:.0} KiB), {} flushes, avg queue depth {:.2} |",
                a.sync_requests,
                a.sync_p50_us,
                a.sync_p99_us,
                a.disk.map_or(0, |d| d.writes),
                a.disk_avg_write_kib,
                a.disk.map_or(0, |d| d.flushes),
                a.disk_avg_queue_depth
            )
            .unwrap();
        }
        if let Some(rd) = &r.read {
            let vs = match (o.mode, l) {
                (Mode::ReadCold, Some(l)) => format!(
                    "{} of fio 1 MiB direct read ({:.2} GB/s); device reads avg {:.0} KiB at queue depth {:.2}",
                    pct(rd.gb_s / (l.direct_read_1m_mib_s * MIB / GB)),
                    l.direct_read_1m_mib_s * MIB / GB,
                    rd.disk_avg_read_kib,
                    rd.disk_avg_queue_depth
                ),
                (Mode::ReadCached, Some(l)) => {
                    format!("memcpy runs at {:.1} GB/s (a cached read copies no payload)", l.memcpy_gb_s)
                }
                _ => String::new(),
            };
            writeln!(
                s,
                "| {tag}: read | {:.2} GB/s | {vs}; {} reads of <= {} B; CPU {:.0} ms per GB |",
                rd.gb_s, rd.reads, o.fetch_bytes, rd.cpu_ms_per_gb
            )
            .unwrap();
        }
        if let Some(rc) = &r.recovery {
            writeln!(
                s,
                "| recovery: Log::open, unclean {:.0} MiB segment | {:.3} s | target < {RECOVERY_SECONDS_TARGET} s; scan {:.2} GB/s; runs {:?} |",
                rc.segment_bytes as f64 / MIB,
                rc.median_seconds,
                rc.scan_gb_s,
                rc.open_seconds.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>()
            )
            .unwrap();
        }
    }
    s
}
