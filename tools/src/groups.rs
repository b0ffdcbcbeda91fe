//! `spindle groups list | describe | reset-offsets`: consumer groups and
//! their lag, read from a broker's admin HTTP listener (`/v1/groups...`).
//! The same numbers the broker exports to Prometheus, as a table.

use clap::{Args, Subcommand};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Args)]
pub struct GroupsArgs {
    /// The broker's admin listener.
    #[arg(long, default_value = "127.0.0.1:9644", global = true)]
    pub admin: SocketAddr,
    #[command(subcommand)]
    pub command: GroupsCommand,
}

#[derive(Subcommand)]
pub enum GroupsCommand {
    /// Every group with state, members, lag status and maximum lag.
    List,
    /// Per partition: committed offset, log-end offset, lag, member, client id, host.
    Describe { group: String },
    /// Moves a group's committed offsets (dry run unless --execute). The
    /// group must have no active members to execute.
    ResetOffsets {
        group: String,
        /// Only this topic (default: every partition the group has).
        #[arg(long)]
        topic: Option<String>,
        #[arg(long, group = "target")]
        to_earliest: bool,
        #[arg(long, group = "target")]
        to_latest: bool,
        /// First offset at or after this timestamp (ms since the epoch).
        #[arg(long, group = "target")]
        to_timestamp: Option<i64>,
        #[arg(long, group = "target")]
        to_offset: Option<i64>,
        /// Apply the plan (without it, only print it).
        #[arg(long)]
        execute: bool,
    },
}

/// One HTTP/1.1 request to the admin listener; returns status and body.
fn http(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot reach the admin listener at {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| format!("reading from {addr}: {e}"))?;
    let (head, body) = buf.split_once("\r\n\r\n").ok_or("malformed HTTP response")?;
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("malformed status line")?;
    Ok((status, body.to_string()))
}

pub(crate) fn get_json(addr: SocketAddr, method: &str, path: &str) -> Result<Value, String> {
    let (status, body) = http(addr, method, path)?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("bad JSON from broker: {e}"))?;
    if status != 200 {
        return Err(v["error"].as_str().unwrap_or(&body).to_string());
    }
    Ok(v)
}

pub(crate) fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(crate) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

pub fn run(a: GroupsArgs) -> Result<(), String> {
    match a.command {
        GroupsCommand::List => {
            let v = get_json(a.admin, "GET", "/v1/groups")?;
            let rows = v
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|g| {
                    ["group", "state", "members", "status", "max_lag", "total_lag"]
                        .iter()
                        .map(|k| cell(&g[*k]))
                        .collect()
                })
                .collect();
            print_table(&["GROUP", "STATE", "MEMBERS", "STATUS", "MAX-LAG", "TOTAL-LAG"], rows);
        }
        GroupsCommand::Describe { group } => {
            let v = get_json(a.admin, "GET", &format!("/v1/groups/{}/lag", escape(&group)))?;
            println!(
                "group {}: state {}, {} members, status {}, max lag {}\n",
                group,
                cell(&v["state"]),
                cell(&v["members"]),
                cell(&v["status"]),
                cell(&v["max_lag"])
            );
            let rows = v["partitions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let committed =
                        if p["committed"].as_i64() == Some(-1) { "-".to_string() } else { cell(&p["committed"]) };
                    vec![
                        cell(&p["topic"]),
                        cell(&p["partition"]),
                        committed,
                        cell(&p["log_end"]),
                        cell(&p["lag"]),
                        cell(&p["status"]),
                        cell(&p["member_id"]),
                        cell(&p["client_id"]),
                        cell(&p["host"]),
                    ]
                })
                .collect();
            print_table(
                &[
                    "TOPIC",
                    "PARTITION",
                    "CURRENT-OFFSET",
                    "LOG-END-OFFSET",
                    "LAG",
                    "STATUS",
                    "CONSUMER-ID",
                    "CLIENT-ID",
                    "HOST",
                ],
                rows,
            );
        }
        GroupsCommand::ResetOffsets { group, topic, to_earliest, to_latest, to_timestamp, to_offset, execute } => {
            let to = match (to_earliest, to_latest, to_timestamp, to_offset) {
                (true, ..) => "earliest".to_string(),
                (_, true, ..) => "latest".to_string(),
                (_, _, Some(ts), _) => format!("timestamp:{ts}"),
                (_, _, _, Some(o)) => format!("offset:{o}"),
                _ => return Err("say where to: --to-earliest, --to-latest, --to-timestamp MS or --to-offset N".into()),
            };
            let mut path = format!("/v1/groups/{}/reset-offsets?to={}", escape(&group), escape(&to));
            if let Some(t) = topic {
                path.push_str(&format!("&topic={}", escape(&t)));
            }
            if execute {
                path.push_str("&execute=true");
            }
            let v = get_json(a.admin, "POST", &path)?;
            let rows = v["partitions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| vec![cell(&p["topic"]), cell(&p["partition"]), cell(&p["new_offset"])])
                .collect();
            print_table(&["TOPIC", "PARTITION", "NEW-OFFSET"], rows);
            if !execute {
                println!("\n(dry run: add --execute to apply)");
            }
        }
    }
    Ok(())
}
