//! Brokers that are not voters (design 4.4): they follow the committed
//! metadata log by long-polling a voter's controller listener with a
//! private request, apply it to their own image, and otherwise behave as
//! any broker (registration, heartbeats, replicas, forwarding to the
//! controller).
//!
//! The rest of the cluster code asks a `DriverHandle` for the quorum's
//! status (who leads, what is committed); an observer has no Raft, so a
//! small task answers those questions from what the metadata fetches told
//! it, and refuses proposals.

use super::node::ClusterNode;
use super::raft_driver::{DriverHandle, Input};
use super::QuorumHandle;
use crate::config::BrokerConfig;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::channel::mpsc;
use futures::StreamExt;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use spindle_replication::controller::ControllerConfig;
use spindle_replication::quorum::{Entry, QuorumError, QuorumStatus, Role};
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// The private API key of a metadata fetch on the controller listener.
pub const SPINDLE_METADATA_FETCH_KEY: i16 = 32001;
/// How long a voter holds a fetch with nothing new.
const FETCH_MAX_WAIT: Duration = Duration::from_millis(500);
/// Entries per response are cut after this many bytes.
const FETCH_RESPONSE_BYTES: usize = 512 << 10;
/// Largest response an observer reads.
const RESPONSE_MAX_BYTES: usize = 4 << 20;
const RETRY: Duration = Duration::from_millis(250);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the fetches told this observer about the quorum.
#[derive(Default)]
struct Seen {
    leader: Cell<Option<i32>>,
    term: Cell<u64>,
    commit: Cell<u64>,
}

/// Starts an observer on the current core (core 0).
pub fn start_observer(cfg: &BrokerConfig) -> QuorumHandle {
    let (tx, rx) = mpsc::channel(super::QUORUM_INPUT_QUEUE);
    let driver = DriverHandle::new(tx);
    let voter_count = cfg.controller_quorum_voters.len();
    let node = ClusterNode::new(
        cfg.node_id,
        voter_count,
        driver.clone(),
        ControllerConfig { session_timeout_ms: cfg.broker_session_timeout_ms, ..ControllerConfig::new(voter_count) },
    );
    let seen = Rc::new(Seen::default());
    glommio::spawn_local(answer_status(rx, seen.clone(), node.clone())).detach();
    glommio::spawn_local(follow(cfg.controller_quorum_voters.clone(), seen, node.clone())).detach();
    let registration = super::lifecycle::spawn(cfg, node.clone(), driver.clone());
    tracing::info!(node = cfg.node_id, voters = ?cfg.controller_quorum_voters, "observing the metadata quorum");
    QuorumHandle { driver, node, registration }
}

/// Stands in for the Raft driver: status from what was seen, proposals
/// refused (an observer never leads).
async fn answer_status(mut rx: mpsc::Receiver<Input>, seen: Rc<Seen>, node: Rc<ClusterNode>) {
    while let Some(input) = rx.next().await {
        match input {
            Input::Status(tx) => {
                let applied = node.image.borrow().applied_index;
                let _ = tx.send(QuorumStatus {
                    role: Role::Follower,
                    term: seen.term.get(),
                    leader: seen.leader.get(),
                    commit: seen.commit.get(),
                    last_index: applied,
                });
            }
            Input::Propose(_, _, done) => {
                let _ = done.send(Err(QuorumError::NotLeader { leader: seen.leader.get() }));
            }
            Input::Peer(_) | Input::Unreachable(_) => {}
        }
    }
}

/// Long-polls voters for committed entries after the last applied one and
/// applies them in order. With no state on disk, it starts from index 1
/// at every start.
async fn follow(voters: Vec<(i32, SocketAddr)>, seen: Rc<Seen>, node: Rc<ClusterNode>) {
    let mut next_voter = 0usize;
    let mut conn: Option<glommio::net::TcpStream> = None;
    loop {
        if conn.is_none() {
            // The leader first (its commit index is the newest), else the
            // next voter in turn: any voter's committed prefix is valid.
            let addr = match seen.leader.get().and_then(|l| voters.iter().find(|(id, _)| *id == l)) {
                Some((_, a)) => *a,
                None => {
                    next_voter = (next_voter + 1) % voters.len();
                    voters[next_voter].1
                }
            };
            match super::transport::connect(addr).await {
                Ok(s) => conn = Some(s),
                Err(_) => {
                    seen.leader.set(None);
                    glommio::timer::sleep(RETRY).await;
                    continue;
                }
            }
        }
        let from = node.image.borrow().applied_index + 1;
        let stream = conn.as_mut().expect("connected above");
        let fetched = glommio::timer::timeout(CALL_TIMEOUT, async {
            fetch(stream, from).await.map_err(|e| glommio::GlommioError::IoError(std::io::Error::other(e)))
        })
        .await;
        match fetched {
            Ok(r) => {
                seen.leader.set(r.leader);
                seen.term.set(r.term);
                seen.commit.set(r.commit);
                for e in &r.entries {
                    if e.index > node.image.borrow().applied_index {
                        node.on_entry(e);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "metadata fetch failed; trying another voter");
                conn = None;
                seen.leader.set(None);
                glommio::timer::sleep(RETRY).await;
            }
        }
    }
}

struct FetchResponse {
    leader: Option<i32>,
    term: u64,
    commit: u64,
    entries: Vec<Entry>,
}

async fn fetch(stream: &mut glommio::net::TcpStream, from: u64) -> Result<FetchResponse, String> {
    let mut req = BytesMut::with_capacity(20);
    req.put_i32(16);
    req.put_i16(SPINDLE_METADATA_FETCH_KEY);
    req.put_i16(0);
    req.put_u64(from);
    req.put_u32(FETCH_MAX_WAIT.as_millis() as u32);
    stream.write_all(&req).await.map_err(|e| e.to_string())?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let len = usize::try_from(i32::from_be_bytes(len))
        .ok()
        .filter(|&l| l <= RESPONSE_MAX_BYTES)
        .ok_or("bad metadata fetch response size")?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.map_err(|e| e.to_string())?;
    decode_response(Bytes::from(body))
}

fn decode_response(mut b: Bytes) -> Result<FetchResponse, String> {
    let short = || "metadata fetch response truncated".to_string();
    if b.remaining() < 24 {
        return Err(short());
    }
    let leader = b.get_i32();
    let term = b.get_u64();
    let commit = b.get_u64();
    let n = b.get_u32() as usize;
    let mut entries = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        if b.remaining() < 20 {
            return Err(short());
        }
        let index = b.get_u64();
        let term = b.get_u64();
        let ctx_len = b.get_u32() as usize;
        if b.remaining() < ctx_len + 4 {
            return Err(short());
        }
        let context = b.split_to(ctx_len);
        let data_len = b.get_u32() as usize;
        if b.remaining() < data_len {
            return Err(short());
        }
        let data = b.split_to(data_len);
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        e.context = context;
        e.data = data;
        entries.push(e);
    }
    Ok(FetchResponse { leader: (leader >= 0).then_some(leader), term, commit, entries })
}

/// A voter's answer to a metadata fetch (`frame` after its size prefix):
/// the committed entries from the asked index, waiting up to the asked
/// time for some to exist.
pub async fn serve_fetch(node: &Rc<ClusterNode>, driver: &DriverHandle, mut frame: Bytes) -> Result<Bytes, String> {
    if frame.len() < 16 {
        return Err("metadata fetch truncated".into());
    }
    frame.advance(4); // key, version
    let from = frame.get_u64().max(1);
    let wait = Duration::from_millis(u64::from(frame.get_u32()).min(FETCH_MAX_WAIT.as_millis() as u64));
    let deadline = std::time::Instant::now() + wait;
    loop {
        let listener = node.applied.listen();
        if node.entries.borrow().last().is_some_and(|e| e.index >= from) || std::time::Instant::now() >= deadline {
            break;
        }
        let timer = glommio::timer::sleep(deadline.saturating_duration_since(std::time::Instant::now()));
        futures::pin_mut!(timer);
        futures::future::select(listener, timer).await;
    }
    let status = driver.status().await.ok_or("quorum driver did not answer")?;
    let entries = node.entries.borrow();
    let mut body = BytesMut::new();
    body.put_i32(status.leader.unwrap_or(-1));
    body.put_u64(status.term);
    body.put_u64(status.commit);
    let count_at = body.len();
    body.put_u32(0);
    let mut n = 0u32;
    let first = entries.partition_point(|e| e.index < from);
    for e in &entries[first..] {
        if body.len() > FETCH_RESPONSE_BYTES {
            break;
        }
        body.put_u64(e.index);
        body.put_u64(e.term);
        body.put_u32(e.context.len() as u32);
        body.put_slice(&e.context);
        body.put_u32(e.data.len() as u32);
        body.put_slice(&e.data);
        n += 1;
    }
    body[count_at..count_at + 4].copy_from_slice(&n.to_be_bytes());
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_i32(body.len() as i32);
    out.put_slice(&body);
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_round_trips_and_a_truncated_one_is_an_error() {
        let mut body = BytesMut::new();
        body.put_i32(2);
        body.put_u64(5);
        body.put_u64(9);
        body.put_u32(2);
        for (i, data) in [(8u64, &b"ab"[..]), (9, &b""[..])] {
            body.put_u64(i);
            body.put_u64(5);
            body.put_u32(1);
            body.put_slice(b"c");
            body.put_u32(data.len() as u32);
            body.put_slice(data);
        }
        let body = body.freeze();
        let r = decode_response(body.clone()).unwrap();
        assert_eq!((r.leader, r.term, r.commit), (Some(2), 5, 9));
        assert_eq!(
            r.entries.iter().map(|e| (e.index, e.data.to_vec())).collect::<Vec<_>>(),
            [(8, b"ab".to_vec()), (9, vec![])]
        );
        for cut in 0..body.len() {
            assert!(decode_response(body.slice(..cut)).is_err(), "cut at {cut}");
        }
    }
}
