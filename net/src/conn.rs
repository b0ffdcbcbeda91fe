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
//!
//! Handlers run concurrently, but produce requests hand their records on in
//! arrival order ([`crate::api::produce`]), so pipelined batches for a
//! partition get offsets in the order they were sent.

use crate::api::{self, FrameError};
use crate::shard::Shard;
use bytes::Bytes;
use bytes::{Buf, BytesMut};
use futures::io::WriteHalf;
use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use spindle_engine::Turnstile;
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

/// A frame's first two bytes when it is a Produce request (API key 0).
const PRODUCE_KEY: [u8; 2] = 0i16.to_be_bytes();

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

/// A connection's read buffer. Bytes are received straight into its spare
/// capacity, uninitialized: through glommio's reader, which takes only
/// initialized bytes, each read had to zero its room first, and as each
/// large frame lands in a fresh allocation (the last one is shared with the
/// handler of the frame before) that was a memset of every byte received,
/// 4-5% of the broker's CPU at peak produce (bench/RESULTS.md, session 12).
#[derive(Default)]
struct ReadBuf {
    buf: BytesMut,
}

impl ReadBuf {
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Takes the next frame off the front once all its bytes are in (they
    /// share the allocation, uncopied). While only part of it is in, makes
    /// room for more of it and returns `Ok(None)`. `Err(size)` for a size
    /// field outside `0..=max`.
    fn next_frame(&mut self, max: usize) -> Result<Option<Bytes>, i32> {
        let Some(b) = self.buf.get(..4) else { return Ok(None) };
        let size = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if size < 0 || size as usize > max {
            return Err(size);
        }
        let size = size as usize;
        if self.buf.len() < 4 + size {
            self.buf.reserve((4 + size - self.buf.len()).min(READ_CHUNK_MAX));
            return Ok(None);
        }
        self.buf.advance(4);
        Ok(Some(self.buf.split_to(size).freeze()))
    }

    /// Receives at most `max` bytes (and at least one, or 0 at the end of
    /// the stream) from the socket `fd` into the spare capacity, making
    /// some first if there is none. What is
    /// waiting is taken with a non-blocking `recv`; when nothing is, the
    /// wait goes through `reader` (glommio's half of the same socket), which
    /// reads one byte once the socket is readable. Reading around `reader`
    /// loses nothing because it is glommio's unbuffered stream (the
    /// `TcpStream` that [`serve`] takes, `TcpStream<NonBuffered>`): it keeps
    /// no received bytes of its own.
    async fn read_from(
        &mut self,
        reader: &mut (impl futures::AsyncRead + Unpin),
        fd: RawFd,
        max: usize,
    ) -> std::io::Result<usize> {
        if self.buf.capacity() == self.buf.len() {
            self.buf.reserve(READ_BUF_INITIAL);
        }
        loop {
            let spare = self.buf.spare_capacity_mut();
            let room = spare.len().min(max);
            // SAFETY: the kernel writes at most `room` bytes into the spare
            // capacity, which is ours; no reference to it is live meanwhile.
            let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), room, libc::MSG_DONTWAIT) };
            if n >= 0 {
                let n = n as usize;
                // SAFETY: the kernel initialized these `n` bytes.
                unsafe { self.buf.set_len(self.buf.len() + n) };
                return Ok(n);
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => break,
                _ => return Err(e),
            }
        }
        let mut one = [0u8; 1];
        let n = reader.read(&mut one).await?;
        self.buf.extend_from_slice(&one[..n]);
        Ok(n)
    }
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
                Some((Ok(reply), parsed)) => {
                    if let Some(frame) = reply.frame {
                        if write_segments(&mut writer, fd, &frame).await.is_err() {
                            break;
                        }
                    }
                    // Includes the run-queue wait and the wait behind
                    // earlier responses: what a pipelining client sees,
                    // less the network.
                    writer_shard.metrics.record_request_total(reply.api, parsed.elapsed().as_micros() as u64);
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
    let mut buf = ReadBuf::default();
    let produce_order = Turnstile::new();
    'conn: loop {
        // Parse every complete frame in the buffer.
        loop {
            let frame = match buf.next_frame(max) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(size) => {
                    tracing::warn!(%peer, size, max, "closing connection: frame size out of bounds (socket.request.max.bytes)");
                    m.frames_rejected.set(m.frames_rejected.get() + 1);
                    break 'conn;
                }
            };
            let s = shard.clone();
            let parsed = Instant::now();
            // A produce takes its place among the connection's produce
            // requests here, in arrival order.
            let order = (frame.get(..2) == Some(&PRODUCE_KEY[..])).then(|| produce_order.take());
            let handler = glommio::spawn_local(async move {
                s.in_flight.set(s.in_flight.get() + 1);
                let started = Instant::now();
                let bytes_in = frame.len();
                let r = api::dispatch(&s, frame, Some(peer), order).await;
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
                        started.duration_since(parsed).as_micros() as u64,
                        started.elapsed().as_micros() as u64,
                    );
                }
                s.in_flight.set(s.in_flight.get() - 1);
                s.in_flight_ev.notify(usize::MAX);
                (r, parsed)
            })
            .detach();
            if tx.send(handler).await.is_err() {
                break 'conn;
            }
        }
        if buf.is_empty() && buf.capacity() > READ_BUF_INITIAL {
            // Idle between requests: give the memory back.
            buf = ReadBuf::default();
        }
        match buf.read_from(&mut reader, fd, READ_CHUNK_MAX).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(tx);
    writer_task.await;
    m.connections_open.set(m.connections_open.get() - 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A blocking reader standing in for glommio's half of the socket,
    /// counting how often `read_from` had to wait through it.
    struct Waiting<'a>(&'a UnixStream, usize);

    impl futures::AsyncRead for Waiting<'_> {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
            self.1 += 1;
            Poll::Ready(self.0.read(buf))
        }
    }

    #[test]
    fn frames_come_out_whole_from_reads_of_any_size() {
        let sizes = [10usize, 70_000, 0, 3, 2_500_000, 5, 1 << 20, 17];
        let frames: Vec<Vec<u8>> =
            sizes.iter().enumerate().map(|(i, &n)| (0..n).map(|j| (i * 31 + j * 7) as u8).collect()).collect();
        let mut data = Vec::new();
        for f in &frames {
            data.extend_from_slice(&(f.len() as i32).to_be_bytes());
            data.extend_from_slice(f);
        }
        let (mut tx, rx) = UnixStream::pair().unwrap();
        // Pieces of many sizes, with pauses, so that reads find anything
        // from one byte to a full socket buffer, or nothing.
        let sender = std::thread::spawn(move || {
            let (mut pos, mut i) = (0usize, 0usize);
            while pos < data.len() {
                let n = [1usize, 4093, 65_536, 3, 300_000][i % 5].min(data.len() - pos);
                tx.write_all(&data[pos..pos + n]).unwrap();
                pos += n;
                i += 1;
                if i % 7 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
        });
        let mut reader = Waiting(&rx, 0);
        let mut buf = ReadBuf::default();
        let mut got = Vec::new();
        futures::executor::block_on(async {
            loop {
                while let Some(frame) = buf.next_frame(usize::MAX).unwrap() {
                    got.push(frame);
                }
                if buf.read_from(&mut reader, rx.as_raw_fd(), READ_CHUNK_MAX).await.unwrap() == 0 {
                    break;
                }
            }
        });
        sender.join().unwrap();
        assert_eq!(got.len(), frames.len());
        for (g, f) in got.iter().zip(&frames) {
            assert!(g[..] == f[..], "a frame of {} bytes came out wrong", f.len());
        }
        assert!(buf.is_empty());
        assert!(reader.1 > 0, "no read had to wait for the socket");
    }
}
