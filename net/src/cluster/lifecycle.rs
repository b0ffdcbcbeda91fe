//! A broker's side of its registration with the active controller: it
//! registers once per process start (a fresh incarnation id), then sends a
//! heartbeat every `broker.heartbeat.interval.ms` with the metadata it has
//! applied.
//! The controller fences a broker whose heartbeats stop for
//! `broker.session.timeout.ms` and unfences it once it has caught up.

use super::controller_api::{call, heartbeat_request, registration_request, HEARTBEAT_VERSION, REGISTRATION_VERSION};
use super::node::ClusterNode;
use super::raft_driver::DriverHandle;
use glommio::net::TcpStream;
use kafka_protocol::messages::{ApiKey, BrokerHeartbeatResponse, BrokerRegistrationResponse};
use kafka_protocol::ResponseError;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// Wait before retrying a registration that failed or found no controller.
const RETRY: Duration = Duration::from_millis(250);
/// One registration or heartbeat exchange gives up after this (a
/// registration waits for its entry to commit): a controller host that
/// vanished leaves a half-open connection that would never answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a broker waiting on the controller checks whether the quorum
/// leader moved.
const LEADER_CHECK: Duration = Duration::from_millis(100);

/// What the broker knows of its own registration (for `/v1/cluster`).
#[derive(Default)]
pub struct Registration {
    pub broker_epoch: Cell<Option<i64>>,
    pub fenced: Cell<bool>,
    /// Set at SIGTERM: heartbeats ask for a controlled shutdown.
    pub want_shutdown: Cell<bool>,
    /// The controller moved this broker's leaderships away: it may stop.
    pub shutdown_done: Cell<bool>,
}

/// Starts this broker's registration and heartbeats ([`run`]) with the
/// settings of `cfg`, against the quorum `driver` reports on.
pub fn spawn(cfg: &crate::config::BrokerConfig, node: Rc<ClusterNode>, driver: Rc<DriverHandle>) -> Rc<Registration> {
    let registration = Rc::new(Registration::default());
    glommio::spawn_local(run(
        Duration::from_millis(cfg.broker_heartbeat_interval_ms),
        cfg.node_id,
        cfg.advertised(),
        cfg.controller_quorum_voters.clone(),
        node,
        driver,
        registration.clone(),
    ))
    .detach();
    registration
}

async fn run(
    heartbeat_interval: Duration,
    node_id: i32,
    advertised: (String, i32),
    voters: Vec<(i32, SocketAddr)>,
    node: Rc<ClusterNode>,
    driver: Rc<DriverHandle>,
    state: Rc<Registration>,
) {
    let incarnation = uuid::Uuid::new_v4();
    let mut conn: Option<(i32, TcpStream)> = None;
    let mut correlation = 0i32;
    state.fenced.set(true);
    loop {
        if state.want_shutdown.get() && state.broker_epoch.get().is_none() {
            // Never registered: nothing leads here.
            state.shutdown_done.set(true);
            return;
        }
        let Some(status) = driver.status().await else {
            tracing::warn!("quorum driver did not answer a status request; retrying");
            glommio::timer::sleep(RETRY).await;
            continue;
        };
        let Some(leader) = status.leader else {
            glommio::timer::sleep(RETRY).await;
            continue;
        };
        if conn.as_ref().is_some_and(|(l, _)| *l != leader) {
            conn = None;
        }
        if conn.is_none() {
            let Some(addr) = voters.iter().find(|(id, _)| *id == leader).map(|(_, a)| *a) else {
                glommio::timer::sleep(RETRY).await;
                continue;
            };
            match super::transport::connect(addr).await {
                Ok(s) => conn = Some((leader, s)),
                Err(e) => {
                    tracing::debug!(leader, %addr, error = %e, "controller unreachable");
                    glommio::timer::sleep(RETRY).await;
                    continue;
                }
            }
        }
        let stream = &mut conn.as_mut().expect("connected above").1;
        correlation = correlation.wrapping_add(1);
        let wait = match state.broker_epoch.get() {
            None => {
                let req = registration_request(node_id, incarnation, &advertised.0, advertised.1 as u16);
                let exchange = call::<_, BrokerRegistrationResponse>(
                    stream,
                    ApiKey::BrokerRegistration,
                    REGISTRATION_VERSION,
                    correlation,
                    &req,
                    CALL_TIMEOUT,
                );
                match unless_leader_moves(exchange, &driver, leader).await {
                    Ok(r) if r.error_code == 0 => {
                        tracing::info!(
                            broker_epoch = r.broker_epoch,
                            controller = leader,
                            "registered with the controller"
                        );
                        state.broker_epoch.set(Some(r.broker_epoch));
                        Duration::ZERO
                    }
                    Ok(r) => {
                        tracing::debug!(error = r.error_code, "registration refused; retrying");
                        conn = None;
                        RETRY
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "registration failed; retrying");
                        conn = None;
                        RETRY
                    }
                }
            }
            Some(epoch) => {
                let offset = node.image.borrow().applied_index;
                let req = heartbeat_request(node_id, epoch, offset).with_want_shut_down(state.want_shutdown.get());
                let exchange = call::<_, BrokerHeartbeatResponse>(
                    stream,
                    ApiKey::BrokerHeartbeat,
                    HEARTBEAT_VERSION,
                    correlation,
                    &req,
                    CALL_TIMEOUT,
                );
                match unless_leader_moves(exchange, &driver, leader).await {
                    Ok(r) if r.error_code == 0 => {
                        if state.fenced.get() != r.is_fenced {
                            tracing::info!(fenced = r.is_fenced, "controller changed this broker's fencing");
                        }
                        state.fenced.set(r.is_fenced);
                        if state.want_shutdown.get() && r.should_shut_down {
                            tracing::info!("controlled shutdown complete: no partition leads here any more");
                            state.shutdown_done.set(true);
                            return;
                        }
                        // Unfencing waits for the broker to catch up, and a
                        // controlled shutdown for the controller: ask again
                        // soon while either is pending.
                        if r.is_fenced || state.want_shutdown.get() {
                            RETRY
                        } else {
                            heartbeat_interval
                        }
                    }
                    Ok(r) if r.error_code == ResponseError::StaleBrokerEpoch.code() => {
                        tracing::info!("controller no longer knows this registration; registering again");
                        state.broker_epoch.set(None);
                        state.fenced.set(true);
                        Duration::ZERO
                    }
                    Ok(r) => {
                        tracing::debug!(error = r.error_code, "heartbeat refused");
                        conn = None;
                        RETRY
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "heartbeat failed");
                        conn = None;
                        RETRY
                    }
                }
            }
        };
        if !wait.is_zero() {
            glommio::timer::sleep(wait).await;
        }
    }
}

/// Runs a registration or heartbeat exchange with `leader`, abandoning it
/// as soon as the quorum has another leader. A controller cut off from the
/// network leaves the exchange waiting for [`CALL_TIMEOUT`], longer than a
/// broker session: meanwhile the new controller, which starts every
/// session when it activates, would fence every broker still waiting on
/// the old one, and with them every ISR member but the cut-off leader,
/// leaving its partitions without a leader.
async fn unless_leader_moves<T>(
    exchange: impl std::future::Future<Output = Result<T, String>>,
    driver: &DriverHandle,
    leader: i32,
) -> Result<T, String> {
    let moved = async {
        loop {
            glommio::timer::sleep(LEADER_CHECK).await;
            if let Some(now) = driver.status().await.and_then(|s| s.leader) {
                if now != leader {
                    return now;
                }
            }
        }
    };
    futures::pin_mut!(exchange);
    futures::pin_mut!(moved);
    match futures::future::select(exchange, moved).await {
        futures::future::Either::Left((r, _)) => r,
        futures::future::Either::Right((now, _)) => Err(format!("the quorum leader moved from {leader} to {now}")),
    }
}
