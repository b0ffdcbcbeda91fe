//! Command-line front of the load generator: `produce`, `consume`, `e2e`,
//! `compare` and `null-sink`.

use super::output;
use super::records::parse_compression;
use super::{KeyDist, LoadOptions, LoadResult, Rate, SizeDist};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let v: f64 = num.parse().map_err(|_| format!("not a duration: {s} (e.g. 30s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("unknown duration unit in {s} (ms, s, m)")),
    };
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("duration out of range: {s}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) =
        if let Some(n) = s.strip_suffix("KiB").or_else(|| s.strip_suffix('k')).or_else(|| s.strip_suffix('K')) {
            (n, 1024)
        } else if let Some(n) = s.strip_suffix("MiB").or_else(|| s.strip_suffix('m')).or_else(|| s.strip_suffix('M')) {
            (n, 1024 * 1024)
        } else {
            (s, 1)
        };
    num.trim().parse::<usize>().map(|n| n * mult).map_err(|_| format!("not a size: {s} (e.g. 1024, 64KiB, 1MiB)"))
}

fn parse_record_size(s: &str) -> Result<SizeDist, String> {
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (parse_size(a)?, parse_size(b)?);
            if a > b || b > 1 << 20 {
                return Err("record size range must be a..b with b <= 1MiB".into());
            }
            Ok(SizeDist::Uniform(a, b))
        }
        None => {
            let n = parse_size(s)?;
            if n > 1 << 20 {
                return Err("record size must be at most 1MiB".into());
            }
            Ok(SizeDist::Fixed(n))
        }
    }
}

fn parse_keys(s: &str) -> Result<KeyDist, String> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        ["none"] => Ok(KeyDist::None),
        ["uniform", n] => Ok(KeyDist::Uniform(n.parse().map_err(|_| "uniform:N needs a count")?)),
        ["zipf", n, e] => {
            let n: u64 = n.parse().map_err(|_| "zipf:N:S needs a count")?;
            let e: f64 = e.parse().map_err(|_| "zipf:N:S needs an exponent")?;
            if n == 0 || e <= 0.0 {
                return Err("zipf needs N >= 1 and S > 0".into());
            }
            Ok(KeyDist::Zipf(n, e))
        }
        _ => Err(format!("keys: none, uniform:N or zipf:N:S, not {s}")),
    }
}

fn parse_rate(s: &str) -> Result<Rate, String> {
    if s == "max" || s == "0" {
        return Ok(Rate::Unthrottled);
    }
    let bad = || format!("rate: max, N (records/s) or NMiB (per second), not {s}");
    let r = if let Some(n) = s.strip_suffix("MiB").or_else(|| s.strip_suffix("MB")) {
        Rate::MiBPerSec(n.parse().map_err(|_| bad())?)
    } else {
        Rate::RecordsPerSec(s.parse().map_err(|_| bad())?)
    };
    match r {
        Rate::RecordsPerSec(v) | Rate::MiBPerSec(v) if v <= 0.0 || !v.is_finite() => Err(bad()),
        r => Ok(r),
    }
}

fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        _ => Err(format!("acks: 0, 1 or all, not {s}")),
    }
}

/// Workload flags shared by produce, consume, e2e and compare.
#[derive(Args, Clone, Debug)]
pub struct WorkloadArgs {
    /// Broker to bootstrap from (any Kafka-compatible broker).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: SocketAddr,
    #[arg(long, default_value = "spindle-bench")]
    pub topic: String,
    /// Partitions to create the topic with, if it does not exist.
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    /// Record value size: N, or a uniform range a..b (e.g. 100..2000).
    #[arg(long, default_value = "1024", value_parser = parse_record_size)]
    pub record_size: SizeDist,
    /// Keys: none (sticky partitioning), uniform:N, or zipf:N:S (murmur2 partitioning).
    #[arg(long, default_value = "none", value_parser = parse_keys)]
    pub keys: KeyDist,
    /// Target batch size per partition.
    #[arg(long, default_value = "64KiB", value_parser = parse_size)]
    pub batch_size: usize,
    /// Longest a record waits for its batch to fill while a request slot is
    /// free (with every slot busy the batch keeps filling, as in Kafka).
    #[arg(long, default_value = "5ms", value_parser = parse_duration)]
    pub linger: Duration,
    /// 0, 1 or all.
    #[arg(long, default_value = "1", value_parser = parse_acks)]
    pub acks: i16,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Open-loop target: records/s, NMiB per second, or max (closed loop).
    #[arg(long, default_value = "max", value_parser = parse_rate)]
    pub rate: Rate,
    /// Run time (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop producing after this many records.
    #[arg(long)]
    pub records: Option<u64>,
    /// Initial time whose latencies are discarded.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Produce requests in flight per producer.
    #[arg(long, default_value_t = 8)]
    pub max_in_flight: usize,
    /// CPUs for the generator's executors, as a list (0,1) or a count; default: all.
    #[arg(long)]
    pub cores: Option<String>,
    /// Directory for summary.json, *.hgrm and the plots.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `--cores`: a count (`2`: CPUs 0 and 1) or a list (`0,2-3`).
pub fn parse_cpus(spec: &str) -> Result<Vec<usize>, String> {
    if !spec.contains([',', '-']) {
        let n: usize = spec.parse().map_err(|_| format!("--cores: {spec}"))?;
        return Ok((0..n.max(1)).collect());
    }
    let mut v = Vec::new();
    for part in spec.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().map_err(|_| "--cores")?, b.parse().map_err(|_| "--cores")?);
                v.extend(a..=b);
            }
            None => v.push(part.parse().map_err(|_| format!("--cores: {part}"))?),
        }
    }
    Ok(v)
}

impl WorkloadArgs {
    pub fn options(&self, consumers: usize, producers: usize) -> Result<LoadOptions, String> {
        if self.partitions < 1 {
            return Err("--partitions must be at least 1".into());
        }
        if self.max_in_flight == 0 {
            return Err("--max-in-flight must be at least 1".into());
        }
        if self.warmup >= self.duration && self.records.is_none() {
            return Err("--warmup must be shorter than --duration".into());
        }
        Ok(LoadOptions {
            bootstrap: self.bootstrap,
            topic: self.topic.clone(),
            partitions: self.partitions,
            record_size: self.record_size.clone(),
            keys: self.keys.clone(),
            batch_bytes: self.batch_size.max(1),
            linger: self.linger,
            acks: self.acks,
            compression: parse_compression(&self.compression)?,
            producers,
            consumers,
            rate: self.rate.clone(),
            duration: self.duration,
            records: self.records,
            warmup: self.warmup,
            max_in_flight: self.max_in_flight,
            cpus: match &self.cores {
                Some(c) => parse_cpus(c)?,
                None => Vec::new(),
            },
            seed: self.seed,
            quiet: false,
        })
    }
}

/// Ctrl-C stops the run; what was measured is still printed and written.
pub fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    stop
}

/// Runs one workload, prints and writes its results.
pub fn run_workload(opts: LoadOptions, out: Option<PathBuf>) -> Result<LoadResult, String> {
    let r = super::run(opts, stop_flag())?;
    output::print_summary(&r);
    if let Some(dir) = out {
        output::write_all(&dir, &r)?;
        println!("wrote {}/{{summary.json,produce.hgrm,e2e.hgrm,latency.svg,throughput.svg}}", dir.display());
    }
    if !r.errors.is_empty() {
        return Err(r.errors[0].clone());
    }
    Ok(r)
}

#[derive(Args, Clone, Debug)]
pub struct CompareArgs {
    /// The other broker (the workload's --bootstrap is the first).
    #[arg(long)]
    pub against: SocketAddr,
    /// Alternating runs per broker (A B A B ...); medians are compared.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        0.0
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    }
}

/// Runs the same workload against two brokers in alternation and prints a
/// table of both with ratios.
pub fn compare(a: CompareArgs) -> Result<(), String> {
    let targets = [a.workload.bootstrap, a.against];
    let mut runs: [Vec<serde_json::Value>; 2] = [Vec::new(), Vec::new()];
    for round in 0..a.rounds.max(1) {
        for (i, addr) in targets.iter().enumerate() {
            println!("\n== round {} on {} ==", round + 1, addr);
            let mut w = a.workload.clone();
            w.bootstrap = *addr;
            let mut opts = w.options(a.consumers, w.producers)?;
            opts.quiet = true;
            let out = a
                .workload
                .out
                .as_ref()
                .map(|d| d.join(format!("{}-round{}", if i == 0 { "a" } else { "b" }, round + 1)));
            let r = run_workload(opts, out)?;
            runs[i].push(output::summary_json(&r));
        }
    }
    let metric = |runs: &Vec<serde_json::Value>, path: &[&str]| {
        median(runs.iter().map(|r| path.iter().fold(r, |v, k| &v[*k]).as_f64().unwrap_or(0.0)).collect())
    };
    let rows: [(&str, &[&str]); 8] = [
        ("produce MiB/s", &["produced", "mib_per_s"]),
        ("produce rec/s", &["produced", "records_per_s"]),
        ("ack p50 ms", &["produce_latency", "p50_ms"]),
        ("ack p99 ms", &["produce_latency", "p99_ms"]),
        ("ack p99.9 ms", &["produce_latency", "p99.9_ms"]),
        ("ack max ms", &["produce_latency", "max_ms"]),
        ("e2e p99 ms", &["e2e_latency", "p99_ms"]),
        ("e2e p99.9 ms", &["e2e_latency", "p99.9_ms"]),
    ];
    println!("\nmedian of {} rounds          A = {}   B = {}", a.rounds.max(1), targets[0], targets[1]);
    println!("{:<16} {:>12} {:>12} {:>8}", "metric", "A", "B", "B/A");
    for (name, path) in rows {
        let (x, y) = (metric(&runs[0], path), metric(&runs[1], path));
        let ratio = if x > 0.0 { format!("{:.2}", y / x) } else { "-".into() };
        println!("{name:<16} {x:>12.3} {y:>12.3} {ratio:>8}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_or_explain() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert!(matches!(parse_record_size("100..2000").unwrap(), SizeDist::Uniform(100, 2000)));
        assert!(parse_record_size("2000..100").is_err());
        assert!(matches!(parse_keys("zipf:1000:1.1").unwrap(), KeyDist::Zipf(1000, _)));
        assert!(parse_keys("zipf:0:1").is_err());
        assert!(matches!(parse_rate("50MiB").unwrap(), Rate::MiBPerSec(_)));
        assert!(matches!(parse_rate("max").unwrap(), Rate::Unthrottled));
        assert!(parse_rate("-3").is_err());
        assert_eq!(parse_acks("all").unwrap(), -1);
        assert!(parse_acks("2").is_err());
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
