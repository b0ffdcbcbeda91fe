//! One client connection: frames in, responses out, in request order.
//!
//! The reader parses frames and starts a handler task for each; the writer
//! awaits the handlers in arrival order and writes their responses, so a
//! client can pipeline requests (librdkafka keeps several produce requests
//! in flight) while Kafka's per-connection ordering holds. The queue between
//! them is bounded ([`crate::config::BrokerConfig::max_in_flight_per_connection`]):
//! when it is full the reader stops reading, and TCP pushes back on the
//! client. Read buffers grow only as bytes arrive, so an idle or half-open
//! connection costs a few KiB, and a frame header claiming 100 MiB costs
//! nothing until the bytes come.
//!
//! Handler tasks are detached: a client that disconnects mid-request does not
//! cancel an append halfway; it completes and its answer is dropped.

use crate::api::{self, FrameError};
use crate::shard::Shard;
use bytes::Bytes;
use bytes::{Buf, BytesMut};
use futures::io::WriteHalf;
use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// First read buffer of a connection; grows to fit the current frame.
const READ_BUF_INITIAL: usize = 4 * 1024;
/// A request handled slower than this is logged (API, peer, time taken).
const SLOW_REQUEST: Duration = Duration::from_secs(5);
/// Largest single read; a bigger frame arrives over several reads.
const READ_CHUNK_MAX: usize = 1024 * 1024;

/// A request's handler task: its reply and when its frame was parsed.
type Handler = glommio::task::JoinHandle<(Result<api::Reply, FrameError>, Instant)>;

/// Most iovecs handed to one `sendmsg` (well under Linux's IOV_MAX of 1024).
const IOVECS_PER_SEND: usize = 64;

/// Writes a response's segments in order. glommio has no vectored write, so
/// this tries a non-blocking `sendmsg` of many segments at once on the raw
/// socket, and only when the socket is full falls back to glommio's write,
/// which waits for room. Record bytes are sent from where they lie.
async fn write_segments(writer: &mut WriteHalf<TcpStream>, fd: RawFd, segs: &[Bytes]) -> std::io::Result<()> {
    let (mut i, mut off) = (0usize, 0usize);
    let advance = |mut n: usize, i: &mut usize, off: &mut usize| {
        while n > 0 {
            let rem = segs[*i].len() - *off;
            if n >= rem {
                n -= rem;
                *i += 1;
                *off = 0;
            } else {
                *off += n;
                n = 0;
            }
        }
        while *i < segs.len() && segs[*i].len() == *off {
            *i += 1;
            *off = 0;
        }
    };
    advance(0, &mut i, &mut off);
    while i < segs.len() {
        let iov: Vec<libc::iovec> = segs[i..]
            .iter()
            .take(IOVECS_PER_SEND)
            .enumerate()
            .map(|(k, s)| {
                let start = if k == 0 { off } else { 0 };
                libc::iovec { iov_base: s[start..].as_ptr() as *mut libc::c_void, iov_len: s.len() - start }
            })
            .collect();
        // SAFETY: every iovec points into a `Bytes` in `segs`, alive for the
        // call; msghdr is zeroed except for the iovec array.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = iov.len() as _;
            libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if n >= 0 {
            advance(n as usize, &mut i, &mut off);
            continue;
        }
        let err = std::io::Error::last_os_error();
        match err.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock => {
                // Full: let glommio wait for room and write what fits.
                let n = writer.write(&segs[i][off..]).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                advance(n, &mut i, &mut off);
            }
            _ => return Err(err),
        }
    }
    Ok(())
}

pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr) {
    let m = &shard.metrics;
    m.connections_open.set(m.connections_open.get() + 1);
    m.connections_total.set(m.connections_total.get() + 1);
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let (mut reader, mut writer) = stream.split();
    let (tx, rx) = glommio::channels::local_channel::new_bounded::<Handler>(shard.config.max_in_flight_per_connection);
    let writer_shard = shard.clone();
    let writer_task = glommio::spawn_local(async move {
        while let Some(handler) = rx.recv().await {
            match handler.await {
                Some((Ok(reply), started)) => {
                    if let Some(frame) = reply.frame {
                        if write_segments(&mut writer, fd, &frame).await.is_err() {
                            break;
                        }
                    }
                    // Includes the wait behind earlier responses: what a
                    // pipelining client sees, less the network.
                    writer_shard.metrics.record_request_total(reply.api, started.elapsed().as_micros() as u64);
                }
                Some((Err(e), _)) => {
                    tracing::warn!(%peer, error = %e, "closing connection");
                    writer_shard.metrics.frames_rejected.set(writer_shard.metrics.frames_rejected.get() + 1);
                    break;
                }
                None => break,
            }
        }
        let _ = writer.close().await;
    });
    let max = shard.config.socket_request_max_bytes;
    let mut buf = BytesMut::new();
    'conn: loop {
        // Parse every complete frame in the buffer.
        while buf.len() >= 4 {
            let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if size < 0 || size as usize > max {
                tracing::warn!(%peer, size, max, "closing connection: frame size out of bounds (socket.request.max.bytes)");
                m.frames_rejected.set(m.frames_rejected.get() + 1);
                break 'conn;
            }
            let size = size as usize;
            if buf.len() < 4 + size {
                buf.reserve((4 + size - buf.len()).min(READ_CHUNK_MAX));
                break;
            }
            buf.advance(4);
            let frame = buf.split_to(size).freeze();
            let s = shard.clone();
            let handler = glommio::spawn_local(async move {
                s.in_flight.set(s.in_flight.get() + 1);
                let started = Instant::now();
                let bytes_in = frame.len();
                let r = api::dispatch(&s, frame, Some(peer)).await;
                if let Ok(reply) = &r {
                    if started.elapsed() > SLOW_REQUEST {
                        tracing::warn!(%peer, api = reply.api, took_ms = started.elapsed().as_millis() as u64, "slow request");
                    }
                    let out = reply.frame.as_ref().map_or(0, |f| f.iter().map(|b| b.len()).sum());
                    s.metrics.record_request(
                        reply.api,
                        bytes_in,
                        out,
                        reply.error,
                        started.elapsed().as_micros() as u64,
                    );
                }
                s.in_flight.set(s.in_flight.get() - 1);
                s.in_flight_ev.notify(usize::MAX);
                (r, started)
            })
            .detach();
            if tx.send(handler).await.is_err() {
                break 'conn;
            }
        }
        if buf.is_empty() && buf.capacity() > READ_BUF_INITIAL {
            // Idle between requests: give the memory back.
            buf = BytesMut::new();
        }
        if buf.capacity() == buf.len() {
            buf.reserve(READ_BUF_INITIAL);
        }
        let start = buf.len();
        let room = (buf.capacity() - start).min(READ_CHUNK_MAX);
        buf.resize(start + room, 0);
        match reader.read(&mut buf[start..]).await {
            Ok(0) | Err(_) => {
                buf.truncate(start);
                break;
            }
            Ok(n) => buf.truncate(start + n),
        }
    }
    drop(tx);
    writer_task.await;
    m.connections_open.set(m.connections_open.get() - 1);
}
