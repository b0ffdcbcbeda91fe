//! What must hold, checked after every event (design 14.4; the quorum's invariant 1 waits for
//! simulator v2). The checker watches the brokers from outside, as a debugger would: it reads their
//! disks and replica states and never feeds anything back.
//!
//! The central object is the partition's **committed log**: every record that any leader has
//! exposed below its HW, in offset order. Whenever a leader's HW passes an offset, the record there
//! must equal the committed one (or extend the committed log). From it follow:
//! - (a) acknowledged records: each acks=all ack must name the committed record at its offset;
//!   every new leader, at the moment it takes over, and every member of the controller's ISR
//!   must hold the whole committed log (design 10.3, 14.4 (8)); after healing, every replica
//!   must. Missing an acked record is reported as `AckedRecordLost`, missing only unacknowledged
//!   committed records as `CommittedRecordLost`;
//! - (e) consumers read below a leader's HW, so what they saw must be committed, and stays so.
//!
//! Each check is cheap per event (the last record below the HW stands for the prefix); the full
//! prefix comparisons (log matching, epoch histories, ISR members' logs) run every
//! [`FULL_CHECK_EVERY`] events and at the end, as design 14.4 allows.

use std::collections::BTreeMap;

use super::controller::OracleController;
use super::disk::{Batch, Disk};
use super::net::Part;
use super::node::{LeaderReplica, Node, Replica};
use crate::partition_replica::LogView;
use crate::types::{BrokerId, LeaderEpoch, Offset, PartitionEpoch};

/// How often the O(log size) checks run, in events.
pub const FULL_CHECK_EVERY: u64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariant {
    /// (a) An acks=all record is missing or different where it was acknowledged.
    AckedRecordLost,
    /// (e) A record some leader exposed below its HW (so consumers may have read it) is missing
    /// or different on a later leader or an ISR member, or a consumer saw something never
    /// committed.
    CommittedRecordLost,
    /// (b) A leader's HW went back within its epoch, or passed its own written end.
    HighWatermark,
    /// (b) / design 14.4 (5): a record below a leader's HW is not durable and identical on every
    /// member of its maximal ISR.
    HwNotReplicated,
    /// (c) Two brokers (or two incarnations) led the same leader epoch, or a leader runs an epoch
    /// the controller never gave it.
    OneLeaderPerEpoch,
    /// (d) Two replicas hold the same (offset, epoch) with different prefixes or contents.
    LogMatching,
    /// Design 14.4 (4): a follower's HW passed its log end.
    FollowerHw,
    /// Design 14.4 (2, 3): image epochs went back, or the committed ISR is not within the maximal
    /// ISR of the leader that applied it.
    Metadata,
    /// Design 14.4 (7, 9): an epoch history out of order or disagreeing with the batches, or a
    /// batch from an epoch the replica has not applied.
    EpochHistory,
    /// (f) The cluster did not converge after the faults stopped.
    Liveness,
    /// An assertion inside the rules or the driver fired.
    Panic,
    /// Simulator v2 (1): two voters applied different entries at the same index.
    QuorumSafety,
    /// Simulator v2 (2): two voters were active controllers in the same Raft term.
    TwoControllersInTerm,
    /// Simulator v2 (3): two voters' images differ at the same applied index, or a voter refused
    /// a committed record.
    ImageDivergence,
}

#[derive(Clone, Debug)]
pub struct Violation {
    pub invariant: Invariant,
    pub detail: String,
}

fn violation<T>(invariant: Invariant, detail: String) -> Result<T, Violation> {
    Err(Violation { invariant, detail })
}

/// The leader state a broker ran at its last check.
struct Track {
    incarnation: u64,
    epoch: LeaderEpoch,
    hw: Offset,
}

pub struct Checker {
    committed: Vec<Vec<Batch>>,
    acked: Vec<BTreeMap<Offset, Batch>>,
    epoch_leaders: BTreeMap<(Part, LeaderEpoch), (BrokerId, u64)>,
    tracks: BTreeMap<(BrokerId, Part), Track>,
    image_epochs: Vec<(LeaderEpoch, PartitionEpoch)>,
    pub acked_records: u64,
    pub observed_records: u64,
}

fn node(nodes: &[Node], id: BrokerId) -> &Node {
    &nodes[id as usize - 1]
}

impl Checker {
    pub fn new(partitions: usize) -> Checker {
        Checker {
            committed: vec![Vec::new(); partitions],
            acked: vec![BTreeMap::new(); partitions],
            epoch_leaders: BTreeMap::new(),
            tracks: BTreeMap::new(),
            image_epochs: vec![(0, 0); partitions],
            acked_records: 0,
            observed_records: 0,
        }
    }

    pub fn committed_len(&self, part: Part) -> usize {
        self.committed[part].len()
    }

    /// After every event. `acked` and `observed` are what the event acknowledged to producers and
    /// delivered to consumers.
    pub fn after_event(
        &mut self,
        nodes: &[Node],
        controller: &OracleController,
        acked: &[(Part, Batch)],
        observed: &[(Part, Batch)],
    ) -> Result<(), Violation> {
        for part in 0..self.committed.len() {
            let reg = controller.assignment(part);
            let (leader_epoch, partition_epoch) = self.image_epochs[part];
            if reg.leader_epoch < leader_epoch || reg.partition_epoch < partition_epoch {
                return violation(Invariant::Metadata, format!("p{part}: image epochs went back: {reg:?}"));
            }
            self.image_epochs[part] = (reg.leader_epoch, reg.partition_epoch);
        }
        for n in nodes.iter().filter(|n| n.up) {
            for part in 0..self.committed.len() {
                let disk = &n.disks[part];
                match &n.replicas[part] {
                    Replica::Leader(l) if !l.state.is_resigned() => self.check_leader(nodes, controller, n, part, l)?,
                    Replica::Follower(f) if f.state.hw() > disk.written_end() => {
                        return violation(
                            Invariant::FollowerHw,
                            format!("p{part} broker {}: HW {} past end {}", n.id, f.state.hw(), disk.written_end()),
                        );
                    }
                    _ => {}
                }
                if let (Some(applied), Some(latest)) = (&n.assignments[part], disk.latest_epoch()) {
                    if latest > applied.leader_epoch {
                        return violation(
                            Invariant::EpochHistory,
                            format!("p{part} broker {} holds epoch {latest}, applied {}", n.id, applied.leader_epoch),
                        );
                    }
                }
            }
        }
        for &(part, b) in acked {
            self.acked_records += 1;
            if let Some(previous) = self.acked[part].insert(b.offset, b).filter(|p| *p != b) {
                return violation(
                    Invariant::AckedRecordLost,
                    format!("p{part}: {previous:?} was acknowledged, now {b:?} at the same offset"),
                );
            }
            if self.committed[part].get(b.offset as usize) != Some(&b) {
                return violation(Invariant::AckedRecordLost, format!("p{part}: acknowledged {b:?} is not committed"));
            }
        }
        for &(part, b) in observed {
            self.observed_records += 1;
            if self.committed[part].get(b.offset as usize) != Some(&b) {
                let committed = self.committed[part].get(b.offset as usize);
                return violation(
                    Invariant::CommittedRecordLost,
                    format!("p{part}: a consumer saw {b:?}, committed is {committed:?}"),
                );
            }
        }
        Ok(())
    }

    fn check_leader(
        &mut self,
        nodes: &[Node],
        controller: &OracleController,
        n: &Node,
        part: Part,
        l: &LeaderReplica,
    ) -> Result<(), Violation> {
        let epoch = l.state.leader_epoch();
        let hw = l.state.hw();
        let disk = &n.disks[part];
        let me = (n.id, n.incarnation);
        let first = *self.epoch_leaders.entry((part, epoch)).or_insert(me);
        if first != me {
            return violation(
                Invariant::OneLeaderPerEpoch,
                format!("p{part} epoch {epoch}: broker {:?} leads, {first:?} led it before", me),
            );
        }
        let reg = controller.assignment(part);
        if epoch > reg.leader_epoch {
            return violation(
                Invariant::OneLeaderPerEpoch,
                format!("p{part}: broker {} leads epoch {epoch}, the controller is at {}", n.id, reg.leader_epoch),
            );
        }
        if hw > disk.written_end() {
            return violation(
                Invariant::HighWatermark,
                format!("p{part} broker {}: HW {hw} past written end {}", n.id, disk.written_end()),
            );
        }
        let track = self.tracks.get(&(n.id, part)).filter(|t| t.incarnation == n.incarnation && t.epoch == epoch);
        let from = match track {
            Some(t) if hw < t.hw => {
                return violation(
                    Invariant::HighWatermark,
                    format!("p{part} broker {} epoch {epoch}: HW went back from {} to {hw}", n.id, t.hw),
                );
            }
            Some(t) => t.hw,
            None => {
                // A broker just started leading `epoch`: it must hold the committed log (10.3).
                let whose = || format!("new leader {} (epoch {epoch}, end {})", n.id, disk.written_end());
                self.holds_committed_log(part, disk, whose)?;
                0
            }
        };
        self.extend_committed(part, n, from, hw)?;
        self.tracks.insert((n.id, part), Track { incarnation: n.incarnation, epoch, hw });

        // Design 14.4 (5), cheaply: the last record below the HW is durable and identical on
        // every maximal-ISR member; log matching (checked in full periodically) extends it to
        // the whole prefix.
        let maximal = l.state.maximal_isr();
        if hw > disk.log_start() {
            let last = disk.batch_at(hw - 1);
            for &m in maximal.iter().filter(|&&m| m != n.id) {
                let theirs = &node(nodes, m).disks[part];
                if theirs.durable_end() < hw || theirs.batch_at(hw - 1) != last {
                    return violation(
                        Invariant::HwNotReplicated,
                        format!(
                            "p{part} leader {} epoch {epoch} HW {hw}: member {m} has {:?} durable to {} (leader: {last:?})",
                            n.id,
                            theirs.batch_at(hw - 1),
                            theirs.durable_end()
                        ),
                    );
                }
            }
        }
        // Design 14.4 (3).
        if reg.leader_epoch == epoch && reg.partition_epoch == l.state.partition_epoch() {
            if let Some(m) = reg.isr.iter().find(|m| !maximal.contains(m)) {
                return violation(
                    Invariant::Metadata,
                    format!("p{part}: committed ISR {:?} has {m}, leader's maximal ISR is {maximal:?}", reg.isr),
                );
            }
        }
        Ok(())
    }

    /// `disk` holds every acknowledged and every committed record; `Err` names the first it lacks
    /// (acknowledged ones first, so the report says the worse), described by `whose`.
    fn holds_committed_log(&self, part: Part, disk: &Disk, whose: impl Fn() -> String) -> Result<(), Violation> {
        let missing = |b: &&Batch| disk.batch_at(b.offset) != Some(*b);
        let (invariant, lost, what) = if let Some(lost) = self.acked[part].values().find(missing) {
            (Invariant::AckedRecordLost, lost, "acknowledged")
        } else if let Some(lost) = self.committed[part].iter().find(missing) {
            (Invariant::CommittedRecordLost, lost, "committed")
        } else {
            return Ok(());
        };
        let has = disk.batch_at(lost.offset);
        violation(invariant, format!("p{part}: {} has {has:?} where {lost:?} was {what}", whose()))
    }

    /// The leader `n` exposes `[from, to)`: each record must match or extend the committed log.
    fn extend_committed(&mut self, part: Part, n: &Node, from: Offset, to: Offset) -> Result<(), Violation> {
        let disk = &n.disks[part];
        let committed = &mut self.committed[part];
        for offset in from.max(disk.log_start())..to {
            let b = *disk.batch_at(offset).expect("below the written end");
            match committed.get(offset as usize) {
                Some(c) if *c == b => {}
                Some(c) => {
                    let invariant = if self.acked[part].get(&offset) == Some(c) {
                        Invariant::AckedRecordLost
                    } else {
                        Invariant::CommittedRecordLost
                    };
                    return violation(
                        invariant,
                        format!("p{part}: leader {} exposes {b:?} below its HW where {c:?} was committed", n.id),
                    );
                }
                None => {
                    assert_eq!(committed.len() as Offset, offset, "committed log extended with a gap");
                    committed.push(b);
                }
            }
        }
        Ok(())
    }

    /// Every [`FULL_CHECK_EVERY`] events and at the end: epoch histories, ISR members' logs, and
    /// log matching (d).
    pub fn full_check(&self, nodes: &[Node], controller: &OracleController) -> Result<(), Violation> {
        for part in 0..self.committed.len() {
            for n in nodes {
                if let Err(e) = n.disks[part].check_consistent() {
                    return violation(Invariant::EpochHistory, format!("p{part} broker {}: {e}", n.id));
                }
            }
            // Design 14.4 (8) and 10.3: whoever the controller may elect holds the committed log,
            // whatever it truncated or lost since (a member joins at or past the epoch start,
            // truncates only past what its leader confirms, and loses nothing it acknowledged).
            for &m in &controller.assignment(part).isr {
                self.holds_committed_log(part, &node(nodes, m).disks[part], || format!("ISR member {m}"))?;
            }
            for (i, a) in nodes.iter().enumerate() {
                for b in &nodes[i + 1..] {
                    if let Err(e) = log_matching(&a.disks[part], &b.disks[part]) {
                        return violation(
                            Invariant::LogMatching,
                            format!("p{part} brokers {} and {}: {e}", a.id, b.id),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// After convergence: every acknowledged and every committed record is on every replica.
    pub fn final_check(&self, nodes: &[Node], controller: &OracleController) -> Result<(), Violation> {
        self.full_check(nodes, controller)?;
        for part in 0..self.committed.len() {
            for &r in &controller.assignment(part).replicas {
                let whose = || format!("after healing, replica {r}");
                self.holds_committed_log(part, &node(nodes, r).disks[part], whose)?;
            }
        }
        Ok(())
    }
}

/// Kafka's log matching property: where two logs hold a batch with the same offset and epoch,
/// they are identical up to it. Past the first difference, no offset may carry the same epoch.
fn log_matching(a: &Disk, b: &Disk) -> Result<(), String> {
    let lo = a.log_start().max(b.log_start());
    let hi = a.written_end().min(b.written_end());
    let mut diverged_at = None;
    for offset in lo..hi {
        let (x, y) = (a.batch_at(offset).expect("in range"), b.batch_at(offset).expect("in range"));
        if let Some(d) = diverged_at {
            if x.epoch == y.epoch {
                return Err(format!("diverged at {d} but both hold epoch {} at {offset}: {x:?} / {y:?}", x.epoch));
            }
        } else if x != y {
            if x.epoch == y.epoch {
                return Err(format!("same offset and epoch, different records: {x:?} / {y:?}"));
            }
            diverged_at = Some(offset);
        }
    }
    Ok(())
}

/// (f): the state the cluster must reach once faults stop. `Err` says what is still missing.
pub fn converged(nodes: &[Node], controller: &OracleController, clients_idle: bool) -> Result<(), String> {
    for n in nodes {
        if !n.up || !n.published {
            return Err(format!("broker {} is not up and registered", n.id));
        }
        if controller.image.broker(n.id).is_none_or(|b| b.fenced) {
            return Err(format!("broker {} is fenced", n.id));
        }
    }
    for part in 0..controller.partitions {
        let reg = controller.assignment(part);
        let Some(leader) = controller.leader(part) else { return Err(format!("p{part} has no leader")) };
        let mut isr = reg.isr.clone();
        let mut replicas = reg.replicas.clone();
        isr.sort_unstable();
        replicas.sort_unstable();
        if isr != replicas {
            return Err(format!("p{part}: ISR {:?} of replicas {:?}", reg.isr, reg.replicas));
        }
        let lead = node(nodes, leader);
        let Replica::Leader(l) = &lead.replicas[part] else {
            return Err(format!("p{part}: broker {leader} has not taken leadership"));
        };
        if l.state.leader_epoch() != reg.leader_epoch || l.state.pending().is_some() || l.waiting_acks() > 0 {
            return Err(format!("p{part}: leader {leader} is behind, has an ISR change or acks pending"));
        }
        let disk = &lead.disks[part];
        if l.state.hw() != disk.written_end() || disk.durable_end() != disk.written_end() {
            return Err(format!("p{part}: leader HW {} / durable {} / end {}", l.state.hw(), disk.durable_end(), {
                disk.written_end()
            }));
        }
        for &r in reg.replicas.iter().filter(|&&r| r != leader) {
            let follower = node(nodes, r);
            let Replica::Follower(f) = &follower.replicas[part] else {
                return Err(format!("p{part}: replica {r} is not following"));
            };
            let theirs = &follower.disks[part];
            if theirs.batches() != disk.batches() || theirs.durable_end() != theirs.written_end() {
                return Err(format!("p{part}: replica {r} ends at {} (leader {})", theirs.written_end(), {
                    disk.written_end()
                }));
            }
            if f.state.hw() != disk.written_end() || f.state.leader_epoch() != reg.leader_epoch {
                return Err(format!(
                    "p{part}: replica {r} has HW {} in epoch {}",
                    f.state.hw(),
                    f.state.leader_epoch()
                ));
            }
        }
    }
    if !clients_idle {
        return Err("a produce is still outstanding".to_string());
    }
    Ok(())
}
