//! Raft messages between voters over TCP, in Kafka framing.
//!
//! Each message is one request frame on the controller listener with the
//! private API key [`SPINDLE_RAFT_API_KEY`] (outside Kafka's range, never
//! advertised) and no response: raft-rs answers with messages of its own,
//! so each node only writes on connections it opened. The body is
//! `spindle_replication::quorum::codec`, never protobuf.
//!
//! Outbound: one task per peer with a bounded queue; when the queue is full
//! or the peer is down, messages are dropped (Raft retransmits) and the
//! driver is told the peer is unreachable so raft-rs stops pipelining to
//! it. Inbound: one task per accepted connection, feeding the driver's
//! input channel, which applies backpressure to the socket.

use super::node::ClusterNode;
use super::raft_driver::{DriverHandle, Input, Outbound};
use bytes::Bytes;
use futures::channel::mpsc;
use futures::{FutureExt, SinkExt};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use spindle_replication::quorum::{codec, node_id, raft_id, Message, MAX_SIZE_PER_MSG};
use spindle_replication::types::BrokerId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// Private API key of a Raft message frame.
pub const SPINDLE_RAFT_API_KEY: i16 = 32000;
/// Messages queued for one peer before new ones are dropped.
pub const RAFT_OUTBOUND_QUEUE_MAX: usize = 1024;
/// Largest Raft frame accepted: raft-rs caps appends at 1 MiB of entries
/// (`MAX_SIZE_PER_MSG`); one oversized entry can exceed that, metadata
/// entries never come near this.
pub const RAFT_FRAME_MAX_BYTES: usize = 64 << 20;
const _: () = assert!(RAFT_FRAME_MAX_BYTES as u64 >= 4 * MAX_SIZE_PER_MSG, "a full append must fit a frame");
/// Connecting to a voter's controller listener gives up after this (a peer
/// is then reported unreachable and the message dropped for Raft to
/// resend; a broker's lifecycle retries).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Wait after a failed connect or accept before the next try.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// A sender writes what is queued for a peer in one write, up to this.
const OUTBOUND_WRITE_BYTES: usize = 1 << 20;
const CLIENT_ID: &str = "spindle-raft";

/// One Raft message as a Kafka request frame (size prefix included).
pub fn encode_frame(m: &Message) -> Vec<u8> {
    let body = codec::encode(m);
    let header_len = 2 + 2 + 4 + 2 + CLIENT_ID.len();
    let mut out = Vec::with_capacity(4 + header_len + body.len());
    out.extend_from_slice(&((header_len + body.len()) as i32).to_be_bytes());
    out.extend_from_slice(&SPINDLE_RAFT_API_KEY.to_be_bytes());
    out.extend_from_slice(&0i16.to_be_bytes()); // api version
    out.extend_from_slice(&0i32.to_be_bytes()); // correlation id: no response
    out.extend_from_slice(&(CLIENT_ID.len() as i16).to_be_bytes());
    out.extend_from_slice(CLIENT_ID.as_bytes());
    out.extend_from_slice(&body);
    out
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame header truncated")]
    Truncated,
    #[error("api key {0} is not a Raft message")]
    NotRaft(i16),
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
}

/// Decodes a frame's contents (after the size prefix).
pub fn decode_frame(frame: Bytes) -> Result<Message, FrameError> {
    if frame.len() < 10 {
        return Err(FrameError::Truncated);
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    if key != SPINDLE_RAFT_API_KEY {
        return Err(FrameError::NotRaft(key));
    }
    let client_len = i16::from_be_bytes([frame[8], frame[9]]);
    let body_at = 10 + usize::try_from(client_len.max(0)).unwrap();
    if frame.len() < body_at {
        return Err(FrameError::Truncated);
    }
    Ok(codec::decode(&frame.slice(body_at..))?)
}

/// Connects to a controller listener (a peer voter's, or the active
/// controller's), with Nagle off: both sides send small messages.
pub async fn connect(addr: SocketAddr) -> glommio::Result<TcpStream, ()> {
    let s = glommio::timer::timeout(CONNECT_TIMEOUT, async {
        TcpStream::connect(addr).await.map_err(|e| glommio::GlommioError::IoError(e.into()))
    })
    .await?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// The outbound side: a queue and a sender task per peer.
pub struct RaftPeers {
    queues: BTreeMap<BrokerId, LocalSender<Message>>,
}

impl RaftPeers {
    /// Starts a sender task per peer (on the current executor). `inputs` is
    /// the driver's channel, for unreachable reports.
    pub fn spawn(peers: BTreeMap<BrokerId, SocketAddr>, inputs: mpsc::Sender<Input>) -> Self {
        let mut queues = BTreeMap::new();
        for (id, addr) in peers {
            let (tx, rx) = local_channel::new_bounded(RAFT_OUTBOUND_QUEUE_MAX);
            glommio::spawn_local(send_to_peer(id, addr, rx, inputs.clone())).detach();
            queues.insert(id, tx);
        }
        RaftPeers { queues }
    }
}

impl Outbound for RaftPeers {
    fn send(&mut self, m: Message) {
        if let Some(q) = self.queues.get(&node_id(m.to)) {
            // Full or closed: dropped; Raft retransmits.
            let _ = q.try_send(m);
        }
    }
}

async fn send_to_peer(
    peer: BrokerId,
    addr: SocketAddr,
    rx: local_channel::LocalReceiver<Message>,
    mut inputs: mpsc::Sender<Input>,
) {
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::new();
    while let Some(first) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(&encode_frame(&first));
        // Whatever else is queued goes out in the same write.
        while buf.len() < OUTBOUND_WRITE_BYTES {
            match rx.recv().now_or_never() {
                Some(Some(m)) => buf.extend_from_slice(&encode_frame(&m)),
                _ => break,
            }
        }
        if conn.is_none() {
            match connect(addr).await {
                Ok(s) => conn = Some(s),
                Err(e) => {
                    tracing::debug!(peer, %addr, error = %e, "raft peer unreachable");
                    let _ = inputs.try_send(Input::Unreachable(peer));
                    glommio::timer::sleep(RECONNECT_BACKOFF).await;
                    continue;
                }
            }
        }
        let s = conn.as_mut().expect("connected above");
        if let Err(e) = s.write_all(&buf).await {
            tracing::debug!(peer, %addr, error = %e, "raft peer connection lost");
            conn = None;
            let _ = inputs.send(Input::Unreachable(peer)).await;
        }
    }
}

/// Controller-API requests (registration, heartbeat) are a few dozen bytes;
/// a larger frame that is not a Raft message closes the connection.
pub const CONTROLLER_REQUEST_MAX_BYTES: usize = 64 << 10;
/// Connections the controller listener holds at once (peers, brokers'
/// lifecycle connections); more are closed at once.
pub const CONTROLLER_CONNECTIONS_MAX: usize = 1024;

/// Accepts connections on the controller listener: Raft messages go to the
/// driver; broker-to-controller requests (registration, heartbeats) to
/// `controller`'s node, answered in order. Runs until the listener fails.
///
/// Raft messages are checked against the voter list (`from` a voter, `to`
/// a voter) but not authenticated: like Kafka's controller listener
/// without TLS/SASL, this port belongs on a trusted network.
pub async fn serve(
    listener: TcpListener,
    inputs: mpsc::Sender<Input>,
    voters: Vec<BrokerId>,
    controller: Option<(Rc<ClusterNode>, Rc<DriverHandle>)>,
) {
    let voters: Rc<[u64]> = voters.iter().map(|&v| raft_id(v)).collect();
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if open.get() >= CONTROLLER_CONNECTIONS_MAX {
                    tracing::warn!("controller listener: too many connections; closing a new one");
                    continue;
                }
                open.set(open.get() + 1);
                let (inputs, voters, controller, open) =
                    (inputs.clone(), voters.clone(), controller.clone(), open.clone());
                glommio::spawn_local(async move {
                    read_peer(stream, inputs, &voters, controller).await;
                    open.set(open.get() - 1);
                })
                .detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "controller listener accept failed");
                glommio::timer::sleep(RECONNECT_BACKOFF).await;
            }
        }
    }
}

async fn read_peer(
    mut stream: TcpStream,
    mut inputs: mpsc::Sender<Input>,
    voters: &[u64],
    controller: Option<(Rc<ClusterNode>, Rc<DriverHandle>)>,
) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    loop {
        // Size and API key first: the key decides how large a frame may be.
        let mut head = [0u8; 6];
        if stream.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = i32::from_be_bytes(head[..4].try_into().unwrap());
        let key = i16::from_be_bytes([head[4], head[5]]);
        let max = if key == SPINDLE_RAFT_API_KEY { RAFT_FRAME_MAX_BYTES } else { CONTROLLER_REQUEST_MAX_BYTES };
        let Some(len) = usize::try_from(len).ok().filter(|&l| (2..=max).contains(&l)) else {
            tracing::warn!(%peer, len, key, "controller connection: frame size out of range; closing");
            return;
        };
        let mut frame = vec![0u8; len];
        frame[..2].copy_from_slice(&head[4..]);
        if stream.read_exact(&mut frame[2..]).await.is_err() {
            return;
        }
        let frame = Bytes::from(frame);
        if key != SPINDLE_RAFT_API_KEY {
            let Some((node, driver)) = &controller else { return };
            match super::controller_api::handle_frame(node, driver, frame).await {
                Ok(resp) => {
                    if stream.write_all(&resp).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "controller connection: bad request; closing");
                    return;
                }
            }
            continue;
        }
        match decode_frame(frame) {
            Ok(m) if voters.contains(&m.from) && voters.contains(&m.to) && m.from != m.to => {
                if inputs.send(Input::Peer(m)).await.is_err() {
                    return;
                }
            }
            Ok(m) => {
                tracing::warn!(%peer, from = m.from, to = m.to, "controller connection: raft message not between voters; closing");
                return;
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "controller connection: malformed frame; closing");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_replication::quorum::MessageType;

    #[test]
    fn frames_round_trip_and_refuse_other_keys() {
        let m =
            Message { msg_type: MessageType::MsgHeartbeat, to: 2, from: 1, term: 3, commit: 9, ..Default::default() };
        let frame = encode_frame(&m);
        let len = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        assert_eq!(decode_frame(Bytes::copy_from_slice(&frame[4..])).unwrap(), m);
        let mut other = frame[4..].to_vec();
        other[0..2].copy_from_slice(&18i16.to_be_bytes());
        assert_eq!(decode_frame(Bytes::from(other)), Err(FrameError::NotRaft(18)));
        for n in 0..frame.len() - 4 {
            assert!(decode_frame(Bytes::copy_from_slice(&frame[4..4 + n])).is_err(), "prefix of {n} bytes");
        }
    }
}
