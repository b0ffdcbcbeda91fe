//! What a run leaves behind: a printed summary, `summary.json`, HdrHistogram
//! percentile files (`*.hgrm`, the format HdrHistogram's plotter reads),
//! and two pictures: latency by percentile and throughput over time (SVG).

use super::{LoadResult, Second};
use hdrhistogram::Histogram;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

pub const QUANTILES: [(f64, &str); 6] =
    [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99.9"), (0.9999, "p99.99"), (1.0, "max")];

pub fn quantiles_ms(h: &Histogram<u64>) -> Vec<(&'static str, f64)> {
    QUANTILES
        .iter()
        .map(|(q, name)| {
            let v = if h.is_empty() {
                0.0
            } else if *q >= 1.0 {
                h.max() as f64 / 1000.0
            } else {
                h.value_at_quantile(*q) as f64 / 1000.0
            };
            (*name, v)
        })
        .collect()
}

pub fn print_summary(r: &LoadResult) {
    let secs = r.measured_secs.max(0.001);
    println!();
    if r.interrupted {
        println!("interrupted: results cover what was measured before Ctrl-C");
    }
    for e in &r.errors {
        println!("error: {e}");
    }
    println!(
        "produced {} records ({:.1} MiB), {:.1} s measured after warm-up: {:.0} rec/s, {:.1} MiB/s; errors {}, skipped (generator backlog) {}",
        r.produce.records,
        r.produce.bytes as f64 / (1 << 20) as f64,
        secs,
        r.produce.measured_records as f64 / secs,
        r.produce.measured_bytes as f64 / (1 << 20) as f64 / secs,
        r.produce.errors,
        r.produce.skipped
    );
    if r.opts.consumers > 0 {
        println!(
            "consumed {} records ({:.1} MiB): {:.0} rec/s, {:.1} MiB/s after warm-up",
            r.consume.records,
            r.consume.bytes as f64 / (1 << 20) as f64,
            r.consume.measured_records as f64 / secs,
            r.consume.measured_bytes as f64 / (1 << 20) as f64 / secs
        );
    }
    let line = |name: &str, h: &Histogram<u64>| {
        let q: Vec<String> = quantiles_ms(h).iter().map(|(n, v)| format!("{n} {v:.3}")).collect();
        println!("{name:<22} (ms, {} samples): {}", h.len(), q.join("  "));
    };
    if r.opts.producers > 0 && r.opts.acks != 0 {
        line("produce ack latency", &r.produce_hist);
        line("produce request rtt", &r.request_hist);
    }
    if r.opts.consumers > 0 {
        line("end-to-end latency", &r.e2e_hist);
    }
}

/// HdrHistogram's percentile-distribution text (values in milliseconds).
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            let p = v.quantile_iterated_to();
            let inv = if p < 1.0 { format!("{:>14.2}", 1.0 / (1.0 - p)) } else { String::new() };
            let _ = writeln!(
                o,
                "{:>12.3} {:>14.12} {:>10} {}",
                v.value_iterated_to() as f64 / 1000.0,
                p,
                v.count_since_last_iteration(),
                inv
            );
        }
    }
    let mean = if h.is_empty() { 0.0 } else { h.mean() / 1000.0 };
    let sd = if h.is_empty() { 0.0 } else { h.stdev() / 1000.0 };
    let _ = writeln!(o, "#[Mean    = {mean:>12.3}, StdDeviation   = {sd:>12.3}]");
    let _ = writeln!(o, "#[Max     = {:>12.3}, Total count    = {:>12}]", h.max() as f64 / 1000.0, h.len());
    o
}

fn latency_plot(path: &Path, series: &[(&str, &Histogram<u64>)]) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let max_ms = series.iter().map(|(_, h)| h.max() as f64 / 1000.0).fold(0.001, f64::max);
    // x: percentile as "number of nines", so the tail gets the room.
    let nines = |p: f64| -(1.0 - p.min(0.99999)).log10();
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency by percentile", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..5.0f64, 0.0..max_ms * 1.05)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| match x.round() as i32 {
            0 => "0%".into(),
            1 => "90%".into(),
            2 => "99%".into(),
            3 => "99.9%".into(),
            4 => "99.99%".into(),
            _ => "99.999%".into(),
        })
        .draw()
        .map_err(|e| e.to_string())?;
    let colors = [BLUE, RED, GREEN];
    for (i, (name, h)) in series.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        let pts: Vec<(f64, f64)> = (0..=500)
            .map(|k| {
                let p = 1.0 - 10f64.powf(-(k as f64) / 100.0);
                (nines(p), h.value_at_quantile(p.min(0.99999)) as f64 / 1000.0)
            })
            .collect();
        let c = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn throughput_plot(path: &Path, timeline: &[Second]) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let max_t = timeline.last().map_or(1.0, |s| s.t);
    let max_y = timeline.iter().map(|s| s.produced_records.max(s.consumed_records) as f64).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Throughput over time", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..max_t, 0.0..max_y * 1.1)
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc("seconds").y_desc("records/s").draw().map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(timeline.iter().map(|s| (s.t, s.produced_records as f64)), BLUE.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label("produced")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    if timeline.iter().any(|s| s.consumed_records > 0) {
        chart
            .draw_series(LineSeries::new(
                timeline.iter().map(|s| (s.t, s.consumed_records as f64)),
                RED.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label("consumed")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

pub fn summary_json(r: &LoadResult) -> serde_json::Value {
    let secs = r.measured_secs.max(0.001);
    let q = |h: &Histogram<u64>| -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (n, v) in quantiles_ms(h) {
            m.insert(format!("{n}_ms"), v.into());
        }
        m.insert("samples".into(), h.len().into());
        m.into()
    };
    let o = &r.opts;
    serde_json::json!({
        "bootstrap": o.bootstrap.to_string(),
        "topic": o.topic,
        "partitions": o.partitions,
        "producers": o.producers,
        "consumers": o.consumers,
        "acks": o.acks,
        "batch_bytes": o.batch_bytes,
        "linger_ms": o.linger.as_secs_f64() * 1000.0,
        "rate": format!("{:?}", o.rate),
        "record_size": format!("{:?}", o.record_size),
        "keys": format!("{:?}", o.keys),
        "compression": format!("{:?}", o.compression),
        "warmup_s": o.warmup.as_secs_f64(),
        "measured_s": secs,
        "interrupted": r.interrupted,
        "errors": r.errors,
        "produced": { "records": r.produce.records, "bytes": r.produce.bytes, "errors": r.produce.errors, "skipped": r.produce.skipped,
                      "records_per_s": r.produce.measured_records as f64 / secs, "mib_per_s": r.produce.measured_bytes as f64 / (1 << 20) as f64 / secs },
        "consumed": { "records": r.consume.records, "bytes": r.consume.bytes, "errors": r.consume.errors,
                      "records_per_s": r.consume.measured_records as f64 / secs, "mib_per_s": r.consume.measured_bytes as f64 / (1 << 20) as f64 / secs },
        "produce_latency": q(&r.produce_hist),
        "produce_request_rtt": q(&r.request_hist),
        "e2e_latency": q(&r.e2e_hist),
        "timeline": r.timeline,
    })
}

/// Writes summary.json, produce.hgrm, e2e.hgrm, latency.svg, throughput.svg.
pub fn write_all(dir: &Path, r: &LoadResult) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let w = |name: &str, text: String| std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"));
    w("summary.json", serde_json::to_string_pretty(&summary_json(r)).unwrap_or_default())?;
    w("produce.hgrm", hgrm(&r.produce_hist))?;
    w("e2e.hgrm", hgrm(&r.e2e_hist))?;
    latency_plot(&dir.join("latency.svg"), &[("produce ack", &r.produce_hist), ("end-to-end", &r.e2e_hist)])?;
    throughput_plot(&dir.join("throughput.svg"), &r.timeline)?;
    Ok(())
}
