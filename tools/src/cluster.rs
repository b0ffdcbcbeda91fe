//! `spindle cluster status` and `spindle topics describe`: the cluster's
//! metadata as one broker has applied it, read from its admin listener
//! (`/v1/cluster`). `spindle cluster elect-leaders` asks that broker for
//! leader elections (`POST /v1/cluster/elect-leaders`), which its
//! controller runs as Kafka's ElectLeaders.

use crate::groups::{cell, escape, get_json, print_table};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::net::SocketAddr;

#[derive(Args)]
pub struct ClusterArgs {
    /// The broker's admin listener.
    #[arg(long, default_value = "127.0.0.1:9644", global = true)]
    pub admin: SocketAddr,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Brokers (epoch, fencing, leaderships), the quorum leader, and the
    /// under-replicated and offline partition counts.
    Status,
    /// Leader elections, as Kafka's kafka-leader-election.sh: by default,
    /// every partition whose preferred (first) replica is in sync and live
    /// but does not lead gets it back as leader.
    ElectLeaders {
        /// Only this topic (default: every partition of every topic).
        #[arg(long)]
        topic: Option<String>,
        /// Only these partitions of --topic (e.g. 0,2).
        #[arg(long, requires = "topic", value_delimiter = ',')]
        partitions: Vec<i32>,
        /// Give leaderless partitions a leader from their ISR (Kafka's
        /// UNCLEAN election; Spindle never elects a replica outside the ISR).
        #[arg(long)]
        unclean: bool,
    },
}

/// Kafka's ELECTION_NOT_NEEDED: the partition already has the leader asked for.
const ELECTION_NOT_NEEDED: i64 = 84;

#[derive(Args)]
pub struct TopicsArgs {
    /// The broker's admin listener.
    #[arg(long, default_value = "127.0.0.1:9644", global = true)]
    pub admin: SocketAddr,
    #[command(subcommand)]
    pub command: TopicsCommand,
}

#[derive(Subcommand)]
pub enum TopicsCommand {
    /// Per partition: leader, leader epoch, replicas, ISR, offline replicas.
    Describe {
        /// Only this topic (default: every topic).
        topic: Option<String>,
    },
}

fn ids(v: &Value) -> String {
    match v.as_array() {
        Some(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        None => cell(v),
    }
}

fn cluster_view(admin: SocketAddr) -> Result<Value, String> {
    let v = get_json(admin, "GET", "/v1/cluster")?;
    if v["mode"] == "single-node" {
        return Err(format!(
            "node {} runs alone (no --controller-quorum-voters): there is no cluster metadata",
            v["node_id"]
        ));
    }
    Ok(v)
}

pub fn run_cluster(a: ClusterArgs) -> Result<(), String> {
    match a.command {
        ClusterCommand::Status => {
            let v = cluster_view(a.admin)?;
            let q = &v["quorum"];
            println!(
                "node {}: quorum {} (term {}, leader {}), applied metadata index {}",
                v["node_id"],
                cell(&q["role"]),
                cell(&q["term"]),
                cell(&q["leader"]),
                cell(&v["metadata"]["applied_index"])
            );
            let rows = v["metadata"]["brokers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| {
                    vec![
                        cell(&b["id"]),
                        format!("{}:{}", cell(&b["host"]), cell(&b["port"])),
                        cell(&b["epoch"]),
                        if b["fenced"] == true { "fenced".into() } else { "live".into() },
                        cell(&b["in_controlled_shutdown"]),
                        cell(&b["leads"]),
                    ]
                })
                .collect();
            print_table(&["BROKER", "ADDRESS", "EPOCH", "STATE", "SHUTTING-DOWN", "LEADS"], rows);
            println!(
                "under-replicated partitions: {}, offline partitions: {}",
                cell(&v["metadata"]["under_replicated_partitions"]),
                cell(&v["metadata"]["offline_partitions"])
            );
            Ok(())
        }
        ClusterCommand::ElectLeaders { topic, partitions, unclean } => {
            let mut path = format!("/v1/cluster/elect-leaders?type={}", if unclean { "unclean" } else { "preferred" });
            if let Some(t) = &topic {
                path.push_str(&format!("&topic={}", escape(t)));
            }
            if !partitions.is_empty() {
                let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
                path.push_str(&format!("&partitions={}", list.join(",")));
            }
            let v = get_json(a.admin, "POST", &path)?;
            let results: Vec<&Value> = v["results"].as_array().into_iter().flatten().collect();
            if results.is_empty() {
                println!("no partition needed an election");
                return Ok(());
            }
            let rows = results
                .iter()
                .map(|r| {
                    let result = if r["error_code"] == 0 { "elected".to_string() } else { cell(&r["error"]) };
                    vec![cell(&r["topic"]), cell(&r["partition"]), result]
                })
                .collect();
            print_table(&["TOPIC", "PARTITION", "RESULT"], rows);
            let failed =
                results.iter().filter(|r| r["error_code"] != 0 && r["error_code"] != ELECTION_NOT_NEEDED).count();
            if failed > 0 {
                return Err(format!("{failed} of {} partitions got no election", results.len()));
            }
            Ok(())
        }
    }
}

pub fn run_topics(a: TopicsArgs) -> Result<(), String> {
    match a.command {
        TopicsCommand::Describe { topic } => {
            let v = cluster_view(a.admin)?;
            let topics: Vec<&Value> = v["metadata"]["topics"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| topic.as_deref().is_none_or(|n| t["name"] == n))
                .collect();
            if let (Some(name), true) = (&topic, topics.is_empty()) {
                return Err(format!("topic {name} does not exist"));
            }
            let mut rows = Vec::new();
            for t in topics {
                for p in t["assignment"].as_array().into_iter().flatten() {
                    rows.push(vec![
                        cell(&t["name"]),
                        cell(&p["partition"]),
                        cell(&p["leader"]),
                        cell(&p["leader_epoch"]),
                        ids(&p["replicas"]),
                        ids(&p["isr"]),
                        ids(&p["offline_replicas"]),
                    ]);
                }
            }
            print_table(&["TOPIC", "PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "OFFLINE"], rows);
            Ok(())
        }
    }
}
