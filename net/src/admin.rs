//! The admin HTTP listener (`--admin-listen`, default 127.0.0.1:9644). A
//! deliberately tiny HTTP/1.1 responder: one request per connection, no
//! keep-alive, no body, request head capped at 8 KiB.
//!
//! * `GET /metrics`: Prometheus text, including per-group lag gauges.
//! * `GET /healthz`: `ok`.
//! * `GET /v1/cluster`: this node's view of the metadata quorum (role, term,
//!   leader, commit index) and of the committed metadata.
//! * `GET /v1/groups`: every consumer group with state, members, status and
//!   maximum lag (JSON).
//! * `GET /v1/groups/GROUP/lag`: per-partition committed offset, log end,
//!   lag, owning member and Burrow-style status (JSON).
//! * `POST /v1/groups/GROUP/reset-offsets?to=earliest|latest|timestamp:MS|offset:N[&topic=T][&execute=true]`:
//!   plans (dry run by default) or applies new committed offsets; applying
//!   needs the group to have no members, as Kafka's tool does.
//! * `POST /v1/cluster/elect-leaders?type=preferred|unclean[&topic=T[&partitions=0,2]]`:
//!   leader elections, as Kafka's ElectLeaders API runs them (see
//!   `api/elect_leaders.rs`): a topic alone means each of its partitions, no
//!   topic every partition (then only the partitions that needed an
//!   election are listed).

use crate::group::{self, lag::CommitSample, schema::Key, schema::OffsetValue};
use crate::metrics::MetricsSnapshot;
use crate::ops;
use crate::shard::Shard;
use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

const REQUEST_HEAD_MAX: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn serve(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(handle(shard.clone(), stream)).detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Gathers and merges every core's metrics.
pub async fn gather(shard: &Rc<Shard>) -> MetricsSnapshot {
    let mut all = MetricsSnapshot::default();
    for s in 0..shard.nr_shards {
        let mut snap = shard
            .invoke_on(s, |sh| async move {
                let mut m = sh.metrics.snapshot();
                let c = sh.cache.stats();
                m.cache_hits = c.hits;
                m.cache_misses = c.misses;
                m.cache_bytes = c.bytes as u64;
                if let Some(j) = sh.ack_journal.get() {
                    (m.journal_held, m.journal_refused) = j.counts();
                    m.journal_bytes = j.used_bytes();
                }
                let io = spindle_engine::stats::snapshot();
                m.fsync_us = Some(io.fsync_us);
                m.write_us = Some(io.write_us);
                m.disk_writes = io.writes;
                m.disk_write_bytes = io.write_bytes;
                m.disk_errors = io.fsyncs_failed + io.writes_failed;
                m.disk_rounds_beside_fsync = io.rounds_beside_fsync;
                m.segments_recycled = io.segments_recycled;
                (m.doorbell_rings, m.doorbell_missed) = spindle_engine::storage::doorbell::counts();
                m.doorbell_nudges = spindle_engine::storage::doorbell::nudges();
                m
            })
            .await;
        snap.partitions = ops::figures(shard, s).await;
        all.merge(snap);
    }
    all.partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    all
}

async fn handle(shard: Rc<Shard>, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
        if head.len() > REQUEST_HEAD_MAX {
            return;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let json = "application/json";
    let (status, ctype, body) = match (method, segs.as_slice()) {
        ("GET", ["metrics"]) => {
            let mut text = gather(&shard).await.render_prometheus();
            text.push_str(&render_group_metrics(&shard).await);
            ("200 OK", "text/plain; version=0.0.4", text)
        }
        ("GET", ["healthz"]) => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", ["v1", "cluster"]) => (
            "200 OK",
            json,
            serde_json::to_string_pretty(&crate::cluster::cluster_json(&shard.config, shard.quorum.get()).await)
                .unwrap_or_default(),
        ),
        ("GET", ["v1", "groups"]) => ("200 OK", json, groups_json(&shard).await),
        ("GET", ["v1", "groups", group, "lag"]) => match group::lag_report(&shard, &unescape(group)).await {
            Some(r) => ("200 OK", json, serde_json::to_string_pretty(&r).unwrap_or_default()),
            None => ("404 Not Found", json, error_json("no such group")),
        },
        ("POST", ["v1", "groups", group, "reset-offsets"]) => reset_offsets(&shard, &unescape(group), query).await,
        ("POST", ["v1", "cluster", "elect-leaders"]) => elect_leaders(&shard, query).await,
        ("GET", _) | ("POST", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "method not allowed\n".to_string()),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.close().await;
}

fn error_json(msg: &str) -> String {
    serde_json::json!({ "error": msg }).to_string()
}

/// Percent-decoding of a path segment or query value.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| unescape(v))
}

async fn all_lag(shard: &Rc<Shard>) -> Vec<group::GroupLag> {
    let mut out = Vec::new();
    for (g, _, _) in crate::api::list_groups::all_groups(shard).await {
        if let Some(r) = group::lag_report(shard, &g).await {
            out.push(r);
        }
    }
    out
}

async fn groups_json(shard: &Rc<Shard>) -> String {
    let list: Vec<serde_json::Value> = all_lag(shard)
        .await
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "group": r.group, "state": r.state, "members": r.members,
                "status": r.status, "max_lag": r.max_lag, "total_lag": r.total_lag,
            })
        })
        .collect();
    serde_json::to_string_pretty(&list).unwrap_or_default()
}

async fn render_group_metrics(shard: &Rc<Shard>) -> String {
    use std::fmt::Write;
    let reports = all_lag(shard).await;
    let mut o = String::new();
    let _ = writeln!(o, "# HELP spindle_consumer_group_lag Log end offset minus committed offset.\n# TYPE spindle_consumer_group_lag gauge");
    for r in &reports {
        for p in &r.partitions {
            let _ = writeln!(
                o,
                "spindle_consumer_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
                r.group, p.topic, p.partition, p.lag
            );
        }
    }
    let _ = writeln!(o, "# HELP spindle_consumer_group_max_lag Largest partition lag of the group (records-lag-max).\n# TYPE spindle_consumer_group_max_lag gauge");
    for r in &reports {
        let _ = writeln!(o, "spindle_consumer_group_max_lag{{group=\"{}\"}} {}", r.group, r.max_lag);
    }
    let _ = writeln!(o, "# HELP spindle_consumer_group_status Lag status: 0 OK, 1 WARNING, 2 STALL, 3 ERROR, 4 STOPPED.\n# TYPE spindle_consumer_group_status gauge");
    for r in &reports {
        let _ = writeln!(
            o,
            "spindle_consumer_group_status{{group=\"{}\",status=\"{}\"}} {}",
            r.group,
            r.status.name(),
            r.status as u8
        );
    }
    o
}

/// Plans, and with `execute=true` applies, new committed offsets.
async fn reset_offsets(shard: &Rc<Shard>, group: &str, query: &str) -> (&'static str, &'static str, String) {
    let json = "application/json";
    let Some(to) = query_param(query, "to") else {
        return ("400 Bad Request", json, error_json("missing to=earliest|latest|timestamp:MS|offset:N"));
    };
    let execute = query_param(query, "execute").is_some_and(|v| v == "true");
    let topic = query_param(query, "topic");
    let report = group::lag_report(shard, group).await;
    let mut targets: Vec<(String, i32)> = report
        .as_ref()
        .map(|r| r.partitions.iter().map(|p| (p.topic.clone(), p.partition)).collect())
        .unwrap_or_default();
    if let Some(t) = &topic {
        targets.retain(|(tt, _)| tt == t);
        if targets.is_empty() {
            let n = shard.snapshot().topics.get(t).map_or(0, |m| m.partitions());
            targets = (0..n).map(|p| (t.clone(), p)).collect();
        }
    }
    if targets.is_empty() {
        return ("404 Not Found", json, error_json("no partitions to reset (no commits and no topic= given)"));
    }
    let mut plan = Vec::new();
    for (t, p) in &targets {
        let new = match to.as_str() {
            "earliest" => crate::ops::list_offset(shard, t, *p, -2, -1, false).await,
            "latest" => crate::ops::list_offset(shard, t, *p, -1, -1, false).await,
            other => match other.split_once(':') {
                Some(("timestamp", ms)) => match ms.parse::<i64>() {
                    Ok(ms) => {
                        let r = crate::ops::list_offset(shard, t, *p, ms, -1, false).await;
                        if r.2 < 0 {
                            crate::ops::list_offset(shard, t, *p, -1, -1, false).await
                        } else {
                            r
                        }
                    }
                    Err(_) => return ("400 Bad Request", json, error_json("timestamp must be milliseconds")),
                },
                Some(("offset", n)) => match n.parse::<i64>() {
                    Ok(n) => {
                        let (_, _, start) = crate::ops::list_offset(shard, t, *p, -2, -1, false).await;
                        let (_, _, end) = crate::ops::list_offset(shard, t, *p, -1, -1, false).await;
                        (0, -1, n.clamp(start.max(0), end.max(0)))
                    }
                    Err(_) => return ("400 Bad Request", json, error_json("offset must be a number")),
                },
                _ => {
                    return (
                        "400 Bad Request",
                        json,
                        error_json("to must be earliest, latest, timestamp:MS or offset:N"),
                    )
                }
            },
        };
        if new.0 != 0 {
            return ("409 Conflict", json, error_json(&format!("cannot look up {t}-{p}: error {}", new.0)));
        }
        plan.push((t.clone(), *p, new.2));
    }
    let plan_json: Vec<_> =
        plan.iter().map(|(t, p, o)| serde_json::json!({"topic": t, "partition": p, "new_offset": o})).collect();
    if !execute {
        return (
            "200 OK",
            json,
            serde_json::json!({"group": group, "executed": false, "partitions": plan_json}).to_string(),
        );
    }
    let g = group.to_string();
    let result = group::on_coordinator(
        shard,
        group,
        |e| Err(format!("this broker cannot serve the group now: {e:?}")),
        move |s| async move {
            s.groups
                .check_commit(&g, -1, "", None)
                .map_err(|_| "the group has members: stop its consumers first".to_string())?;
            let ts = crate::shard::now_ms();
            let commits: Vec<((String, i32), OffsetValue)> = plan
                .iter()
                .map(|(t, p, o)| {
                    (
                        (t.clone(), *p),
                        OffsetValue { offset: *o, leader_epoch: -1, metadata: String::new(), commit_timestamp: ts },
                    )
                })
                .collect();
            let records = commits
                .iter()
                .map(|((t, p), v)| {
                    (Key::Offset { group: g.clone(), topic: t.clone(), partition: *p }, Some(v.encode()))
                })
                .collect();
            group::write_records(&s, &g, records).await.map_err(|e| format!("writing commits: {e:?}"))?;
            s.groups.apply_commits(&g, &commits);
            let samples = commits
                .iter()
                .map(|(k, v)| (k.clone(), CommitSample { offset: v.offset, log_end: v.offset, ts_ms: ts }))
                .collect();
            s.groups.record_samples(&g, samples);
            Ok(())
        },
    )
    .await;
    match result {
        Ok(()) => {
            ("200 OK", json, serde_json::json!({"group": group, "executed": true, "partitions": plan_json}).to_string())
        }
        Err(e) => ("409 Conflict", json, error_json(&e)),
    }
}

/// Runs leader elections; one JSON row per partition outcome.
async fn elect_leaders(shard: &Rc<Shard>, query: &str) -> (&'static str, &'static str, String) {
    use spindle_replication::controller::{ElectLeadersRequest, ElectLeadersTopic, ElectionType};
    let json = "application/json";
    let election = match query_param(query, "type").as_deref() {
        None | Some("preferred") => ElectionType::Preferred,
        Some("unclean") => ElectionType::Unclean,
        Some(other) => return ("400 Bad Request", json, error_json(&format!("type={other}: preferred or unclean"))),
    };
    let topics = match query_param(query, "topic") {
        None if query_param(query, "partitions").is_some() => {
            return ("400 Bad Request", json, error_json("partitions= needs topic="));
        }
        None => None,
        Some(name) => {
            let partitions = match query_param(query, "partitions") {
                Some(list) => match list.split(',').map(str::parse::<i32>).collect::<Result<Vec<_>, _>>() {
                    Ok(ps) => ps,
                    Err(_) => return ("400 Bad Request", json, error_json("partitions= is a list of numbers: 0,2")),
                },
                None => match shard.snapshot().topics.get(&name) {
                    Some(meta) => (0..meta.partitions()).collect(),
                    None => return ("404 Not Found", json, error_json(&format!("topic {name} does not exist"))),
                },
            };
            Some(vec![ElectLeadersTopic { name, partitions }])
        }
    };
    match crate::api::elect_leaders::run(shard, ElectLeadersRequest { election, topics }).await {
        Ok(results) => {
            let rows: Vec<serde_json::Value> = results
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|(partition, outcome)| {
                        serde_json::json!({
                            "topic": t.name,
                            "partition": partition,
                            "error_code": outcome.as_ref().map_or_else(|e| e.code().code(), |()| 0),
                            "error": outcome.as_ref().err().map(|e| e.to_string()),
                        })
                    })
                })
                .collect();
            ("200 OK", json, serde_json::to_string_pretty(&serde_json::json!({ "results": rows })).unwrap_or_default())
        }
        Err(e) => ("503 Service Unavailable", json, error_json(&format!("no controller answered: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_decodes_percent_and_plus_and_survives_bad_input() {
        assert_eq!(unescape("my%2Dgroup"), "my-group");
        assert_eq!(unescape("a+b"), "a b");
        assert_eq!(unescape("100%"), "100%");
        assert_eq!(unescape("%zz%e2%82"), "%zz\u{fffd}");
        assert_eq!(query_param("to=earliest&execute=true", "execute").as_deref(), Some("true"));
        assert_eq!(query_param("to=offset%3A5", "to").as_deref(), Some("offset:5"));
        assert_eq!(query_param("to=x", "topic"), None);
    }
}
