//! Kafka's broker-to-controller APIs on the controller listener
//! (BrokerRegistration, BrokerHeartbeat), both sides: the handler the
//! active controller runs, and the client a broker's lifecycle task uses.

use super::node::{ClusterNode, NotController};
use super::raft_driver::DriverHandle;
use crate::api::{decode, encode_response, str_bytes};
use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::broker_registration_request::Listener;
use kafka_protocol::messages::{
    ApiKey, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerId, BrokerRegistrationRequest,
    BrokerRegistrationResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::ResponseError;
use spindle_replication::controller::{self as ctl, ControllerReply, ControllerRequest};
use std::rc::Rc;

pub const REGISTRATION_VERSION: i16 = 3;
pub const HEARTBEAT_VERSION: i16 = 1;
/// Largest controller response a broker reads (registration and heartbeat
/// answers are a few dozen bytes).
const RESPONSE_MAX_BYTES: usize = 1 << 20;

fn not_controller_code(e: NotController) -> i16 {
    match e {
        NotController::Busy => ResponseError::RequestTimedOut.code(),
        NotController::Elsewhere(_) | NotController::Resigned => ResponseError::NotController.code(),
    }
}

/// Answers one controller-API request frame (after its size prefix).
/// `Err` closes the connection.
pub async fn handle_frame(node: &Rc<ClusterNode>, driver: &DriverHandle, mut frame: Bytes) -> Result<Bytes, String> {
    if frame.len() < 8 {
        return Err("request header truncated".into());
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(key).map_err(|_| format!("api key {key} not served on the controller listener"))?;
    let max = match key {
        ApiKey::BrokerRegistration => 4,
        ApiKey::BrokerHeartbeat => 1,
        _ => return Err(format!("{key:?} not served on the controller listener")),
    };
    if !(0..=max).contains(&version) {
        return Err(format!("{key:?} v{version} not supported"));
    }
    let header: RequestHeader =
        decode(&mut frame, key.request_header_version(version), "request header").map_err(|e| e.to_string())?;
    let status = driver.status().await.ok_or("quorum driver did not answer")?;
    let out = match key {
        ApiKey::BrokerRegistration => {
            let req: BrokerRegistrationRequest =
                decode(&mut frame, version, "BrokerRegistration").map_err(|e| e.to_string())?;
            let listener = req.listeners.first();
            let request = ctl::BrokerRegistrationRequest {
                broker_id: req.broker_id.0,
                incarnation_id: req.incarnation_id,
                host: listener.map(|l| l.host.to_string()).unwrap_or_default(),
                port: listener.map_or(0, |l| l.port),
                rack: req.rack.map(|r| r.to_string()),
                cluster_id: Some(req.cluster_id.to_string()).filter(|c| !c.is_empty()),
            };
            let (error_code, broker_epoch) =
                match node.request(ControllerRequest::BrokerRegistration(request), &status).await {
                    Ok(ControllerReply::BrokerRegistration(Ok(r))) => (0, r.broker_epoch),
                    Ok(ControllerReply::BrokerRegistration(Err(e))) => (e.code().code(), -1),
                    Ok(other) => return Err(format!("controller answered {other:?} to a registration")),
                    Err(e) => (not_controller_code(e), -1),
                };
            let resp =
                BrokerRegistrationResponse::default().with_error_code(error_code).with_broker_epoch(broker_epoch);
            encode_response(key, version, header.correlation_id, &resp)
        }
        _ => {
            let req: BrokerHeartbeatRequest =
                decode(&mut frame, version, "BrokerHeartbeat").map_err(|e| e.to_string())?;
            let request = ctl::BrokerHeartbeatRequest {
                broker_id: req.broker_id.0,
                broker_epoch: req.broker_epoch,
                current_metadata_offset: req.current_metadata_offset.max(0) as u64,
                want_fence: req.want_fence,
                want_shut_down: req.want_shut_down,
            };
            let mut resp = BrokerHeartbeatResponse::default();
            match node.request(ControllerRequest::BrokerHeartbeat(request), &status).await {
                Ok(ControllerReply::BrokerHeartbeat(Ok(r))) => {
                    resp = resp
                        .with_is_caught_up(r.is_caught_up)
                        .with_is_fenced(r.is_fenced)
                        .with_should_shut_down(r.should_shut_down);
                }
                Ok(ControllerReply::BrokerHeartbeat(Err(e))) => resp = resp.with_error_code(e.code().code()),
                Ok(other) => return Err(format!("controller answered {other:?} to a heartbeat")),
                Err(e) => resp = resp.with_error_code(not_controller_code(e)).with_is_fenced(true),
            }
            encode_response(key, version, header.correlation_id, &resp)
        }
    };
    out.map(BytesMut::freeze).map_err(|e| e.to_string())
}

/// One request/response exchange with a controller listener, given up
/// after `timeout` (the connection must then be dropped: an answer may
/// still come).
pub async fn call<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
    timeout: std::time::Duration,
) -> Result<Resp, String> {
    let exchange = exchange(stream, key, version, correlation_id, request);
    let expired = glommio::timer::sleep(timeout);
    futures::pin_mut!(exchange);
    futures::pin_mut!(expired);
    match futures::future::select(exchange, expired).await {
        futures::future::Either::Left((r, _)) => r,
        futures::future::Either::Right(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn exchange<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> Result<Resp, String> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(str_bytes("spindle-broker")));
    let hv = key.request_header_version(version);
    let size = header.compute_size(hv).map_err(|e| e.to_string())?
        + request.compute_size(version).map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, hv).map_err(|e| e.to_string())?;
    request.encode(&mut buf, version).map_err(|e| e.to_string())?;
    stream.write_all(&buf).await.map_err(|e| e.to_string())?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let len = usize::try_from(i32::from_be_bytes(len))
        .ok()
        .filter(|&l| l <= RESPONSE_MAX_BYTES)
        .ok_or("bad response size")?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.map_err(|e| e.to_string())?;
    let mut body = Bytes::from(body);
    let rh: ResponseHeader =
        decode(&mut body, key.response_header_version(version), "response header").map_err(|e| e.to_string())?;
    if rh.correlation_id != correlation_id {
        return Err(format!("response for correlation id {}, expected {correlation_id}", rh.correlation_id));
    }
    decode(&mut body, version, "controller response").map_err(|e| e.to_string())
}

pub fn registration_request(
    broker_id: i32,
    incarnation_id: uuid::Uuid,
    host: &str,
    port: u16,
) -> BrokerRegistrationRequest {
    BrokerRegistrationRequest::default()
        .with_broker_id(BrokerId(broker_id))
        .with_incarnation_id(incarnation_id)
        .with_listeners(vec![Listener::default()
            .with_name(str_bytes("PLAINTEXT"))
            .with_host(str_bytes(host))
            .with_port(port)])
}

pub fn heartbeat_request(broker_id: i32, broker_epoch: i64, metadata_offset: u64) -> BrokerHeartbeatRequest {
    BrokerHeartbeatRequest::default()
        .with_broker_id(BrokerId(broker_id))
        .with_broker_epoch(broker_epoch)
        .with_current_metadata_offset(metadata_offset as i64)
}
