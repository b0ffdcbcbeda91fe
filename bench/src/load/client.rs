//! A small, fast Kafka client for the load generator, on the same codec as
//! the broker (`kafka-protocol`), not on librdkafka.
//!
//! One connection carries many requests in flight: requests are written in
//! order, a reader task matches responses (which Kafka returns in request
//! order) to waiters. Non-flexible API versions that every Kafka since 2.x
//! and Spindle accept are used, so the same run can target either.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::channel::oneshot;
use futures::io::{ReadHalf, WriteHalf};
use futures::lock::Mutex;
use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

pub const PRODUCE_VERSION: i16 = 7;
pub const FETCH_VERSION: i16 = 11;
pub const METADATA_VERSION: i16 = 8;
pub const LIST_OFFSETS_VERSION: i16 = 5;
pub const CREATE_TOPICS_VERSION: i16 = 4;

/// Largest response frame accepted (a fetch of many partitions).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {0}: {1}")]
    Connect(SocketAddr, String),
    #[error("connection to {0} lost: {1}")]
    Io(SocketAddr, String),
    #[error("bad response from {0}: {1}")]
    Protocol(SocketAddr, String),
    #[error("{0}")]
    Kafka(String),
    #[error("{what}: error {code}")]
    Partition { what: String, code: i16 },
}

impl ClientError {
    /// Whether partition leadership may have moved: a lost connection, or a
    /// partition error that says so ([`code_wants_metadata`]).
    pub fn wants_metadata(&self) -> bool {
        match self {
            ClientError::Connect(..) | ClientError::Io(..) => true,
            ClientError::Partition { code, .. } => code_wants_metadata(*code),
            ClientError::Protocol(..) | ClientError::Kafka(_) => false,
        }
    }
}

/// UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER,
/// NOT_ENOUGH_REPLICAS and FENCED_LEADER_EPOCH: ask Metadata again.
pub fn code_wants_metadata(code: i16) -> bool {
    matches!(code, 3 | 5 | 6 | 19 | 74)
}

pub struct Conn {
    pub addr: SocketAddr,
    writer: Mutex<WriteHalf<TcpStream>>,
    /// The socket, for a vectored send of a request's parts.
    fd: RawFd,
    pending: RefCell<VecDeque<(i32, oneshot::Sender<Result<Bytes, String>>)>>,
    next_id: Cell<i32>,
    broken: RefCell<Option<String>>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Rc<Conn>, ClientError> {
        let stream = TcpStream::connect(addr).await.map_err(|e| ClientError::Connect(addr, e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let fd = stream.as_raw_fd();
        let (reader, writer) = stream.split();
        let conn = Rc::new(Conn {
            addr,
            writer: Mutex::new(writer),
            fd,
            pending: RefCell::new(VecDeque::new()),
            next_id: Cell::new(1),
            broken: RefCell::new(None),
        });
        glommio::spawn_local(read_loop(conn.clone(), reader)).detach();
        Ok(conn)
    }

    fn frame<R: Encodable>(&self, key: ApiKey, version: i16, req: &R) -> Result<(i32, BytesMut), ClientError> {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let buf = encode_frame(id, key, version, req).map_err(|e| ClientError::Protocol(self.addr, e))?;
        Ok((id, buf))
    }

    /// Writes `head` then `tail` as one message: no other request's bytes
    /// go between them.
    pub async fn write_parts(&self, head: &[u8], tail: &[u8]) -> Result<(), ClientError> {
        let mut w = self.writer.lock().await;
        let io = |e: std::io::Error| ClientError::Io(self.addr, e.to_string());
        // Both parts in one non-blocking sendmsg: with TCP_NODELAY two
        // writes would be two segments, and two wake-ups of the receiver.
        // What the socket does not take now goes through glommio, which
        // waits for room.
        let sent = send_now(self.fd, head, tail).map_err(io)?;
        let (head_rest, tail_rest) =
            if sent < head.len() { (&head[sent..], tail) } else { (&head[..0], &tail[(sent - head.len())..]) };
        if !head_rest.is_empty() {
            w.write_all(head_rest).await.map_err(io)?;
        }
        if !tail_rest.is_empty() {
            w.write_all(tail_rest).await.map_err(io)?;
        }
        Ok(())
    }

    /// Sends a request and waits for its response body.
    pub async fn call<R: Encodable, Resp: Decodable>(
        &self,
        key: ApiKey,
        version: i16,
        req: &R,
    ) -> Result<Resp, ClientError> {
        self.check_open()?;
        let (id, buf) = self.frame(key, version, req)?;
        self.exchange(id, &buf, &[], version).await
    }

    fn check_open(&self) -> Result<(), ClientError> {
        match self.broken.borrow().clone() {
            Some(e) => Err(ClientError::Io(self.addr, e)),
            None => Ok(()),
        }
    }

    /// Sends a framed request (and the tail that completes it) and waits
    /// for the response with its correlation id.
    async fn exchange<Resp: Decodable>(
        &self,
        id: i32,
        buf: &[u8],
        tail: &[u8],
        version: i16,
    ) -> Result<Resp, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().push_back((id, tx));
        self.write_parts(buf, tail).await?;
        let mut body = rx
            .await
            .map_err(|_| ClientError::Io(self.addr, "connection closed".into()))?
            .map_err(|e| ClientError::Io(self.addr, e))?;
        Resp::decode(&mut body, version).map_err(|e| ClientError::Protocol(self.addr, e.to_string()))
    }

    /// Frames `req`, whose encoding must end with a null bytes field (length
    /// -1), as if that field held `tail`, and sends `tail` after the frame
    /// from where it lies instead of copying it into the frame.
    pub fn frame_with_tail<R: Encodable>(
        &self,
        key: ApiKey,
        version: i16,
        req: &R,
        tail: &[u8],
    ) -> Result<(i32, BytesMut), ClientError> {
        let (id, mut buf) = self.frame(key, version, req)?;
        attach_tail(&mut buf, tail.len()).map_err(|e| ClientError::Protocol(self.addr, e))?;
        Ok((id, buf))
    }

    /// [`Conn::call`] for a request framed by [`Conn::frame_with_tail`].
    pub async fn call_with_tail<R: Encodable, Resp: Decodable>(
        &self,
        key: ApiKey,
        version: i16,
        req: &R,
        tail: &[u8],
    ) -> Result<Resp, ClientError> {
        self.check_open()?;
        let (id, buf) = self.frame_with_tail(key, version, req, tail)?;
        self.exchange(id, &buf, tail, version).await
    }

    /// Whether the connection still works (it breaks for good on an I/O error).
    pub fn is_open(&self) -> bool {
        self.broken.borrow().is_none()
    }

    pub fn in_flight(&self) -> usize {
        self.pending.borrow().len()
    }
}

/// Sends `head` then `tail` with one non-blocking `sendmsg`, returning how
/// many bytes the socket took (0 when it is full).
fn send_now(fd: RawFd, head: &[u8], tail: &[u8]) -> std::io::Result<usize> {
    let iov = [
        libc::iovec { iov_base: head.as_ptr() as *mut libc::c_void, iov_len: head.len() },
        libc::iovec { iov_base: tail.as_ptr() as *mut libc::c_void, iov_len: tail.len() },
    ];
    loop {
        // SAFETY: the iovecs point into `head` and `tail`, alive for the
        // call; msghdr is zeroed except for the iovec array.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = iov.len() as _;
            libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = std::io::Error::last_os_error();
        match err.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock => return Ok(0),
            _ => return Err(err),
        }
    }
}

/// A request frame: size, header, body.
fn encode_frame<R: Encodable>(id: i32, key: ApiKey, version: i16, req: &R) -> Result<BytesMut, String> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(id)
        .with_client_id(Some(StrBytes::from_static_str("spindle-bench")));
    let hv = key.request_header_version(version);
    let size =
        header.compute_size(hv).map_err(|e| e.to_string())? + req.compute_size(version).map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, hv).map_err(|e| e.to_string())?;
    req.encode(&mut buf, version).map_err(|e| e.to_string())?;
    Ok(buf)
}

/// Turns a frame whose last field is null bytes (length -1) into the head
/// of the same frame with that field holding `tail_len` bytes, which follow.
fn attach_tail(buf: &mut BytesMut, tail_len: usize) -> Result<(), String> {
    let n = buf.len();
    if n < 8 || buf[n - 4..] != (-1i32).to_be_bytes() {
        return Err("request does not end with a null bytes field".into());
    }
    let size = i32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize + tail_len;
    buf[..4].copy_from_slice(&(size as i32).to_be_bytes());
    buf[n - 4..].copy_from_slice(&(tail_len as i32).to_be_bytes());
    Ok(())
}

async fn read_loop(conn: Rc<Conn>, mut reader: ReadHalf<TcpStream>) {
    let err = loop {
        let mut len = [0u8; 4];
        if let Err(e) = reader.read_exact(&mut len).await {
            break e.to_string();
        }
        let size = i32::from_be_bytes(len);
        if size < 4 || size as usize > MAX_RESPONSE_BYTES {
            break format!("response frame of {size} bytes");
        }
        let mut body = vec![0u8; size as usize];
        if let Err(e) = reader.read_exact(&mut body).await {
            break e.to_string();
        }
        let mut body = Bytes::from(body);
        let id = body.get_i32();
        let Some((want, tx)) = conn.pending.borrow_mut().pop_front() else {
            break format!("response {id} with no request waiting");
        };
        if want != id {
            break format!("response {id} out of order (expected {want})");
        }
        let _ = tx.send(Ok(body));
    };
    *conn.broken.borrow_mut() = Some(err.clone());
    for (_, tx) in conn.pending.borrow_mut().drain(..) {
        let _ = tx.send(Err(err.clone()));
    }
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Partition count of `topic`, or `None` if the broker does not know it.
pub async fn partition_count(conn: &Conn, topic: &str) -> Result<Option<i32>, ClientError> {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]))
        .with_allow_auto_topic_creation(false);
    let resp: MetadataResponse = conn.call(ApiKey::Metadata, METADATA_VERSION, &req).await?;
    Ok(resp.topics.iter().find(|t| t.error_code == 0).map(|t| t.partitions.len() as i32))
}

/// Each partition's leader, by address, from Metadata; leaderless partitions are left out.
pub async fn partition_leaders(conn: &Conn, topic: &str) -> Result<HashMap<i32, SocketAddr>, ClientError> {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]))
        .with_allow_auto_topic_creation(false);
    let resp: MetadataResponse = conn.call(ApiKey::Metadata, METADATA_VERSION, &req).await?;
    let mut brokers = HashMap::new();
    for b in &resp.brokers {
        let addr =
            (b.host.as_str(), b.port as u16).to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| {
                ClientError::Protocol(conn.addr, format!("broker {} at {}:{}", b.node_id.0, &*b.host, b.port))
            })?;
        brokers.insert(b.node_id.0, addr);
    }
    let t = resp
        .topics
        .iter()
        .find(|t| t.error_code == 0)
        .ok_or_else(|| ClientError::Kafka(format!("topic {topic} not in metadata")))?;
    Ok(t.partitions.iter().filter_map(|p| brokers.get(&p.leader_id.0).map(|a| (p.partition_index, *a))).collect())
}

/// Connections to partition leaders, as a Kafka client keeps them: one per
/// broker, opened when first needed, looked up again after a leader moved.
pub struct Leaders {
    bootstrap: Rc<Conn>,
    topic: String,
    leaders: RefCell<HashMap<i32, SocketAddr>>,
    conns: RefCell<HashMap<SocketAddr, Rc<Conn>>>,
}

impl Leaders {
    pub async fn new(bootstrap: SocketAddr, topic: &str) -> Result<Leaders, ClientError> {
        let conn = Conn::connect(bootstrap).await?;
        let leaders = partition_leaders(&conn, topic).await?;
        let conns = HashMap::from([(bootstrap, conn.clone())]);
        Ok(Leaders {
            bootstrap: conn,
            topic: topic.to_string(),
            leaders: RefCell::new(leaders),
            conns: RefCell::new(conns),
        })
    }

    /// The connection to `partition`'s leader (the bootstrap broker while
    /// it has none).
    pub async fn conn(&self, partition: i32) -> Result<Rc<Conn>, ClientError> {
        let addr = self.leaders.borrow().get(&partition).copied().unwrap_or(self.bootstrap.addr);
        let open = self.conns.borrow().get(&addr).filter(|c| c.is_open()).cloned();
        match open {
            Some(c) => Ok(c),
            None => {
                let c = Conn::connect(addr).await?;
                self.conns.borrow_mut().insert(addr, c.clone());
                Ok(c)
            }
        }
    }

    /// Asks Metadata again, after NOT_LEADER_OR_FOLLOWER or a lost
    /// connection, through any broker still reachable.
    pub async fn refresh(&self) -> Result<(), ClientError> {
        let candidates: Vec<Rc<Conn>> =
            std::iter::once(self.bootstrap.clone()).chain(self.conns.borrow().values().cloned()).collect();
        let mut last = None;
        for c in candidates.into_iter().filter(|c| c.is_open()) {
            match partition_leaders(&c, &self.topic).await {
                Ok(l) => {
                    *self.leaders.borrow_mut() = l;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Kafka("no broker reachable for metadata".into())))
    }

    /// `partitions` grouped by leader.
    pub fn by_leader(&self, partitions: &[i32]) -> Vec<Vec<i32>> {
        let leaders = self.leaders.borrow();
        let mut groups: HashMap<SocketAddr, Vec<i32>> = HashMap::new();
        for &p in partitions {
            groups.entry(leaders.get(&p).copied().unwrap_or(self.bootstrap.addr)).or_default().push(p);
        }
        groups.into_values().collect()
    }
}

/// Creates `topic` (already existing is fine) and waits until Metadata shows it.
pub async fn ensure_topic(conn: &Conn, topic: &str, partitions: i32) -> Result<i32, ClientError> {
    if let Some(n) = partition_count(conn, topic).await? {
        return Ok(n);
    }
    let req = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![CreatableTopic::default()
        .with_name(topic_name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, CREATE_TOPICS_VERSION, &req).await?;
    if let Some(t) = resp.topics.first() {
        if t.error_code != 0 && t.error_code != 36 {
            return Err(ClientError::Kafka(format!("creating {topic}: error {}", t.error_code)));
        }
    }
    for _ in 0..100 {
        if let Some(n) = partition_count(conn, topic).await? {
            return Ok(n);
        }
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(ClientError::Kafka(format!("topic {topic} did not appear in metadata")))
}

/// Produces one batch to one partition. `Ok(None)` for acks=0.
pub async fn produce(
    conn: &Conn,
    topic: &str,
    partition: i32,
    acks: i16,
    batch: Bytes,
) -> Result<Option<i64>, ClientError> {
    // The batch is the request's last field (one topic, one partition, and
    // v7 has no tagged fields): it goes to the socket from the batch's own
    // buffer, not copied into the frame.
    let req = ProduceRequest::default().with_acks(acks).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(None)]),
    ]);
    if acks == 0 {
        let (_, buf) = conn.frame_with_tail(ApiKey::Produce, PRODUCE_VERSION, &req, &batch)?;
        return conn.write_parts(&buf, &batch).await.map(|()| None);
    }
    let resp: ProduceResponse = conn.call_with_tail(ApiKey::Produce, PRODUCE_VERSION, &req, &batch).await?;
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .ok_or_else(|| ClientError::Protocol(conn.addr, "empty produce response".into()))?;
    if p.error_code != 0 {
        return Err(ClientError::Partition { what: format!("produce to {topic}-{partition}"), code: p.error_code });
    }
    Ok(Some(p.base_offset))
}

/// The latest offset (high watermark) of each partition.
pub async fn latest_offsets(conn: &Conn, topic: &str, partitions: &[i32]) -> Result<Vec<i64>, ClientError> {
    let req =
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(-1))
                    .collect(),
            )]);
    let resp: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, LIST_OFFSETS_VERSION, &req).await?;
    let mut out = Vec::new();
    for &p in partitions {
        let r = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|r| r.partition_index == p)
            .ok_or_else(|| ClientError::Protocol(conn.addr, format!("no offset for partition {p}")))?;
        if r.error_code != 0 {
            return Err(ClientError::Partition { what: format!("list offsets {topic}-{p}"), code: r.error_code });
        }
        out.push(r.offset);
    }
    Ok(out)
}

/// One fetch of `partitions` from `offsets`: the records bytes of each.
pub async fn fetch(
    conn: &Conn,
    topic: &str,
    partitions: &[i32],
    offsets: &[i64],
    max_wait_ms: i32,
) -> Result<Vec<(i32, i16, Bytes)>, ClientError> {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(64 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default().with_topic(topic_name(topic)).with_partitions(
            partitions
                .iter()
                .zip(offsets)
                .map(|(&p, &o)| {
                    FetchPartition::default().with_partition(p).with_fetch_offset(o).with_partition_max_bytes(8 << 20)
                })
                .collect(),
        )]);
    let resp: FetchResponse = conn.call(ApiKey::Fetch, FETCH_VERSION, &req).await?;
    Ok(resp
        .responses
        .into_iter()
        .flat_map(|t| t.partitions.into_iter())
        .map(|p| (p.partition_index, p.error_code, p.records.unwrap_or_default()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produce_request(records: Option<Bytes>) -> ProduceRequest {
        ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name("t"))
                .with_partition_data(vec![PartitionProduceData::default().with_index(3).with_records(records)])])
    }

    #[test]
    fn produce_frame_with_the_batch_as_tail_is_the_encoded_request() {
        let batch = Bytes::from((0..1000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let whole = encode_frame(7, ApiKey::Produce, PRODUCE_VERSION, &produce_request(Some(batch.clone()))).unwrap();
        let mut head = encode_frame(7, ApiKey::Produce, PRODUCE_VERSION, &produce_request(None)).unwrap();
        attach_tail(&mut head, batch.len()).unwrap();
        let mut sent = head.to_vec();
        sent.extend_from_slice(&batch);
        assert_eq!(sent, whole.to_vec());
        // A request whose last field is not null bytes is refused.
        let mut other = encode_frame(8, ApiKey::Produce, PRODUCE_VERSION, &produce_request(Some(batch))).unwrap();
        assert!(attach_tail(&mut other, 10).is_err());
    }
}
