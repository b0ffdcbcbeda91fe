//! The admin HTTP listener (`--admin-listen`, default 127.0.0.1:9644):
//! `GET /metrics` (Prometheus text) and `GET /healthz`. A deliberately tiny
//! HTTP/1.1 responder: one GET per connection, no keep-alive, request head
//! capped at 8 KiB.

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
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", gather(&shard).await.render_prometheus()),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "method not allowed\n".to_string()),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.close().await;
}
