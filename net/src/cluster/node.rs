//! A voter's cluster state on core 0: the metadata image every committed
//! entry is applied to, and, while this node leads the quorum, the active
//! controller.
//!
//! The controller becomes active once this node leads and has applied the
//! first (empty) entry of its term, so its image holds everything earlier
//! leaders committed (design 5.1). It resigns when the node stops leading
//! or Raft refuses a proposal; requests waiting on it are answered
//! NOT_CONTROLLER and clients retry elsewhere.

use super::raft_driver::{DriverHandle, Input};
use bytes::Bytes;
use futures::channel::oneshot;
use spindle_replication::controller::{
    ControllerConfig, ControllerCore, ControllerOutput, ControllerReply, ControllerRequest, ProposalId, RequestToken,
};
use spindle_replication::metadata::{decode_batch, encode_batch, MetadataImage};
use spindle_replication::quorum::{Entry, QuorumStatus, Role};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// How often the controller's clock runs (session expiry, activation).
pub const CONTROLLER_TICK: Duration = Duration::from_millis(100);

/// Why a request did not reach an active controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotController {
    /// This node does not lead (or not yet: it has not applied its term's
    /// first entry). The known leader, if any.
    Elsewhere(Option<i32>),
    /// The controller resigned before the request's entries committed.
    Resigned,
    /// Too many requests wait for commits; retry.
    Busy,
}

pub struct ClusterNode {
    node_id: i32,
    voters: usize,
    driver: Rc<DriverHandle>,
    pub image: RefCell<MetadataImage>,
    /// Notified after every applied entry (the metadata applier waits on it).
    pub applied: event_listener::Event,
    /// Every applied entry since this process started (the metadata log is
    /// small; no snapshots yet), served to observers by index.
    pub entries: RefCell<Vec<Entry>>,
    /// Term of the last entry applied (empty entries included).
    last_applied_term: Cell<u64>,
    active: RefCell<Option<ControllerCore>>,
    /// The Raft term the active controller was elected in.
    active_term: Cell<u64>,
    waiting: RefCell<HashMap<RequestToken, oneshot::Sender<ControllerReply>>>,
    next_token: Cell<RequestToken>,
    config: ControllerConfig,
}

impl ClusterNode {
    pub fn new(node_id: i32, voters: usize, driver: Rc<DriverHandle>, config: ControllerConfig) -> Rc<Self> {
        Rc::new(ClusterNode {
            node_id,
            voters,
            driver,
            image: RefCell::new(MetadataImage::default()),
            applied: event_listener::Event::new(),
            entries: RefCell::new(Vec::new()),
            last_applied_term: Cell::new(0),
            active: RefCell::new(None),
            active_term: Cell::new(0),
            waiting: RefCell::new(HashMap::new()),
            next_token: Cell::new(0),
            config,
        })
    }

    pub fn is_active(&self) -> bool {
        self.active.borrow().is_some()
    }

    /// The quorum driver's apply callback: every committed normal entry,
    /// in order, from index 1 after each start.
    pub fn on_entry(self: &Rc<Self>, e: &Entry) {
        self.apply_entry(e);
        self.entries.borrow_mut().push(e.clone());
        self.applied.notify(usize::MAX);
    }

    fn apply_entry(self: &Rc<Self>, e: &Entry) {
        self.last_applied_term.set(e.term);
        if self.is_active() && e.term != self.active_term.get() {
            // An entry of another term: leadership changed under the
            // controller (possibly away and back). Its pending proposals
            // may be lost or reordered; a new controller starts from the
            // image once it applied its own term's first entry.
            self.resign("an entry of a newer term was applied");
        }
        if e.data.is_empty() {
            // A new leader's first entry: it carries nothing but its term.
            self.image.borrow_mut().applied_index = e.index;
            return;
        }
        let records = match decode_batch(&e.data) {
            Ok(r) => r,
            Err(err) => {
                // We wrote it and its CRC was checked: our bug. Skipping it
                // would let this node's metadata drift from the others'.
                tracing::error!(index = e.index, error = %err, "committed metadata entry undecodable; stopping");
                std::process::exit(70);
            }
        };
        let delta = self.image.borrow_mut().apply(e.index, &records);
        for r in &delta.rejected {
            tracing::error!(index = e.index, record = ?r.record, reason = ?r.reason, "metadata record skipped");
        }
        let out = {
            let mut active = self.active.borrow_mut();
            let Some(core) = active.as_mut() else { return };
            core.on_committed(&self.image.borrow(), &delta, ProposalId::from_bytes(&e.context))
        };
        self.dispatch(out);
    }

    /// Sends a request to the active controller on this node and waits for
    /// its reply (released once its entries commit).
    pub async fn request(
        self: &Rc<Self>,
        request: ControllerRequest,
        status: &QuorumStatus,
    ) -> Result<ControllerReply, NotController> {
        if self.is_active() && (status.role != Role::Leader || status.term != self.active_term.get()) {
            self.resign("the quorum reports another leader or term");
        }
        let rx = {
            let mut active = self.active.borrow_mut();
            let Some(core) = active.as_mut() else { return Err(NotController::Elsewhere(status.leader)) };
            if !core.accepts_operations() {
                return Err(NotController::Busy);
            }
            let token = self.next_token.get();
            self.next_token.set(token + 1);
            let (tx, rx) = oneshot::channel();
            self.waiting.borrow_mut().insert(token, tx);
            let out = core.handle(token, request, super::clock_ms());
            drop(active);
            self.dispatch(out);
            rx
        };
        rx.await.map_err(|_| NotController::Resigned)
    }

    /// Proposes the controller's entries and releases its replies.
    fn dispatch(self: &Rc<Self>, out: ControllerOutput) {
        for p in out.proposals {
            let (tx, rx) = oneshot::channel();
            let input =
                Input::Propose(Bytes::copy_from_slice(&p.id.to_bytes()), Bytes::from(encode_batch(&p.records)), tx);
            if !self.driver.try_send(input) {
                // The driver's queue is full or gone: the proposal is lost,
                // and the next ones would commit out of order. Resign.
                self.resign("the quorum driver's queue refused a proposal");
                return;
            }
            // Raft refusing it (this node no longer leads) means the same.
            let (node, term) = (Rc::downgrade(self), self.active_term.get());
            glommio::spawn_local(async move {
                let refused = !matches!(rx.await, Ok(Ok(())));
                if let Some(node) = node.upgrade().filter(|n| refused && n.is_active() && n.active_term.get() == term) {
                    node.resign("raft refused a proposal");
                }
            })
            .detach();
        }
        let mut waiting = self.waiting.borrow_mut();
        for (token, reply) in out.replies {
            if let Some(tx) = waiting.remove(&token) {
                let _ = tx.send(reply);
            }
        }
    }

    fn resign(&self, why: &str) {
        if let Some(core) = self.active.borrow_mut().take() {
            tracing::info!(node = self.node_id, why, "controller resigned");
            let mut waiting = self.waiting.borrow_mut();
            for token in core.resign() {
                // Dropping the sender answers the waiter NotController::Resigned.
                waiting.remove(&token);
            }
            waiting.clear();
        }
    }

    /// One controller clock tick: activate or resign by the quorum's
    /// status, then let the active controller act on time (session expiry,
    /// internal topics, preferred leaders).
    pub fn tick(self: &Rc<Self>, status: &QuorumStatus) {
        let leads = status.role == Role::Leader;
        if self.is_active() && (!leads || self.active_term.get() != status.term) {
            self.resign("no longer the quorum leader");
        }
        // Activate once the term's first entry is applied, and everything
        // in the log with it: entries a resigned core of this same term
        // left behind must be applied before a new core starts from the
        // image.
        let caught_up = self.image.borrow().applied_index >= status.last_index;
        if leads && !self.is_active() && self.last_applied_term.get() == status.term && caught_up {
            let seed = uuid::Uuid::new_v4().as_u64_pair().0;
            let core =
                ControllerCore::new(self.config.clone(), &self.image.borrow(), status.term, super::clock_ms(), seed);
            tracing::info!(node = self.node_id, term = status.term, voters = self.voters, "controller active");
            *self.active.borrow_mut() = Some(core);
            self.active_term.set(status.term);
        }
        let out = match self.active.borrow_mut().as_mut() {
            Some(core) => core.tick(super::clock_ms()),
            None => return,
        };
        self.dispatch(out);
    }
}
