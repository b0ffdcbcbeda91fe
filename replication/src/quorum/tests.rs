//! Quorum cores wired together in memory: a driver per node that follows the
//! order of the module docs, a message queue, crashes and isolation.

use super::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

struct Node {
    core: Option<QuorumCore>,
    /// What survives a crash: persisted entries and hard state.
    disk: Restored,
    /// Non-empty committed entries, in apply order, since the last start.
    applied: Vec<Bytes>,
}

struct Cluster {
    voters: Vec<BrokerId>,
    nodes: BTreeMap<BrokerId, Node>,
    queue: VecDeque<Message>,
    isolated: BTreeSet<BrokerId>,
    seed: u64,
}

impl Cluster {
    fn new(voters: &[BrokerId], seed: u64) -> Self {
        let mut c = Cluster {
            voters: voters.to_vec(),
            nodes: BTreeMap::new(),
            queue: VecDeque::new(),
            isolated: BTreeSet::new(),
            seed,
        };
        for &id in voters {
            c.nodes.insert(id, Node { core: None, disk: Restored::default(), applied: Vec::new() });
            c.start(id);
        }
        c
    }

    fn start(&mut self, id: BrokerId) {
        let cfg = QuorumConfig { node: id, voters: self.voters.clone() };
        let n = self.nodes.get_mut(&id).unwrap();
        n.applied.clear();
        let seed = self.seed.wrapping_mul(31).wrapping_add(id as u64);
        n.core = Some(QuorumCore::open(&cfg, n.disk.clone(), seed, &discard_logger()).unwrap());
        self.process(id);
    }

    fn crash(&mut self, id: BrokerId) {
        self.nodes.get_mut(&id).unwrap().core = None;
    }

    fn core(&mut self, id: BrokerId) -> &mut QuorumCore {
        self.nodes.get_mut(&id).unwrap().core.as_mut().expect("node is up")
    }

    /// Runs the driver loop of one node until raft-rs has nothing ready.
    fn process(&mut self, id: BrokerId) {
        let n = self.nodes.get_mut(&id).unwrap();
        let Some(core) = n.core.as_mut() else { return };
        while let Some(mut rd) = core.ready() {
            self.queue.extend(rd.send_now.drain(..));
            n.applied.extend(rd.committed.iter().filter(|e| !e.data.is_empty()).map(|e| e.data.clone()));
            if let Some(first) = rd.entries.first() {
                n.disk.entries.retain(|e| e.index < first.index);
                n.disk.entries.extend(rd.entries.iter().cloned());
            }
            if let Some(hs) = &rd.hard_state {
                n.disk.hard_state = hs.clone();
            }
            self.queue.extend(rd.send_after_persist.drain(..));
            let light = core.persisted(rd);
            self.queue.extend(light.send);
            n.applied.extend(light.committed.iter().filter(|e| !e.data.is_empty()).map(|e| e.data.clone()));
        }
    }

    fn deliver_all(&mut self) {
        while let Some(m) = self.queue.pop_front() {
            let (from, to) = (node_id(m.from), node_id(m.to));
            if self.isolated.contains(&from) || self.isolated.contains(&to) {
                continue;
            }
            let Some(core) = self.nodes.get_mut(&to).unwrap().core.as_mut() else { continue };
            core.step(m).unwrap();
            self.process(to);
        }
    }

    fn tick(&mut self) {
        let ids: Vec<BrokerId> = self.nodes.keys().copied().collect();
        for id in ids {
            if let Some(core) = self.nodes.get_mut(&id).unwrap().core.as_mut() {
                core.tick();
                self.process(id);
            }
        }
        self.deliver_all();
    }

    /// The one leader among the nodes that are up and not isolated, after
    /// ticking until there is exactly one.
    fn elect(&mut self) -> BrokerId {
        for _ in 0..200 {
            self.tick();
            let leaders: Vec<BrokerId> = self
                .nodes
                .iter()
                .filter(|(id, n)| !self.isolated.contains(id) && n.core.as_ref().is_some_and(is_leader))
                .map(|(id, _)| *id)
                .collect();
            if leaders.len() == 1 {
                return leaders[0];
            }
        }
        panic!("no single leader after 200 ticks");
    }

    fn propose(&mut self, id: BrokerId, data: &str) -> Result<(), QuorumError> {
        let r = self.core(id).propose(Bytes::new(), Bytes::copy_from_slice(data.as_bytes()));
        self.process(id);
        self.deliver_all();
        r
    }

    fn applied(&self, id: BrokerId) -> Vec<String> {
        self.nodes[&id].applied.iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect()
    }
}

fn is_leader(c: &QuorumCore) -> bool {
    c.status().role == Role::Leader
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn three_voters_elect_one_leader_and_commit_in_order_everywhere() {
    let mut c = Cluster::new(&[0, 1, 2], 1);
    let leader = c.elect();
    for i in 0..20 {
        c.propose(leader, &format!("op{i}")).unwrap();
    }
    // Followers learn the commit index with the next heartbeat.
    for _ in 0..3 {
        c.tick();
    }
    let want: Vec<String> = (0..20).map(|i| format!("op{i}")).collect();
    for id in 0..3 {
        assert_eq!(c.applied(id), want, "node {id}");
        assert_eq!(c.core(id).status().leader, Some(leader));
    }
    let follower = (leader + 1) % 3;
    assert!(matches!(c.propose(follower, "x"), Err(QuorumError::NotLeader { leader: Some(l) }) if l == leader));
}

#[test]
fn an_isolated_leader_is_replaced_and_its_uncommitted_entry_never_applies() {
    let mut c = Cluster::new(&[0, 1, 2], 2);
    let old = c.elect();
    c.propose(old, "a").unwrap();
    c.tick();
    let old_term = c.core(old).status().term;
    c.isolated.insert(old);
    // Accepted by the isolated leader, but no quorum will ever have it.
    c.propose(old, "lost").unwrap();
    let new = c.elect();
    assert_ne!(new, old);
    assert!(c.core(new).status().term > old_term);
    c.propose(new, "b").unwrap();
    // check_quorum: the isolated leader steps down by itself.
    for _ in 0..30 {
        c.tick();
    }
    assert!(!is_leader(c.nodes[&old].core.as_ref().unwrap()), "an isolated leader keeps leading");
    c.isolated.clear();
    for _ in 0..10 {
        c.tick();
    }
    for id in 0..3 {
        assert_eq!(c.applied(id), strings(&["a", "b"]), "node {id}");
    }
}

#[test]
fn a_restarted_node_replays_what_it_persisted_and_catches_up() {
    let mut c = Cluster::new(&[0, 1, 2], 3);
    let leader = c.elect();
    c.propose(leader, "a").unwrap();
    c.propose(leader, "b").unwrap();
    c.tick();
    let follower = (leader + 1) % 3;
    c.crash(follower);
    c.propose(leader, "c").unwrap();
    c.start(follower);
    // On start it applies again from index 1 what it had committed.
    assert_eq!(c.applied(follower), strings(&["a", "b"]));
    for _ in 0..10 {
        c.tick();
    }
    assert_eq!(c.applied(follower), strings(&["a", "b", "c"]));

    // The leader crashes too: a new one is elected from the survivors and
    // nothing committed is lost.
    c.crash(leader);
    let next = c.elect();
    assert_ne!(next, leader);
    c.propose(next, "d").unwrap();
    c.start(leader);
    for _ in 0..10 {
        c.tick();
    }
    for id in 0..3 {
        assert_eq!(c.applied(id), strings(&["a", "b", "c", "d"]), "node {id}");
    }
}

#[test]
fn a_single_voter_leads_once_it_campaigns() {
    let mut c = Cluster::new(&[0], 4);
    c.core(0).campaign().unwrap();
    c.process(0);
    assert!(is_leader(c.nodes[&0].core.as_ref().unwrap()));
    c.propose(0, "only").unwrap();
    assert_eq!(c.applied(0), strings(&["only"]));
    assert_eq!(c.nodes[&0].disk.hard_state.vote, raft_id(0));
}

#[test]
fn a_seed_decides_every_election() {
    let run = |seed: u64| {
        let mut c = Cluster::new(&[0, 1, 2, 3, 4], seed);
        let mut history = Vec::new();
        for _ in 0..3 {
            let leader = c.elect();
            history.push((leader, c.core(leader).status().term));
            c.crash(leader);
            for _ in 0..5 {
                c.tick();
            }
            c.start(leader);
        }
        history
    };
    for seed in 0..5 {
        assert_eq!(run(seed), run(seed), "seed {seed}");
    }
    // And different seeds do not all agree (the timeouts are really drawn).
    let histories: BTreeSet<_> = (0..8).map(run).collect();
    assert!(histories.len() > 1);
}

#[test]
fn node_ids_map_to_raft_ids_without_zero() {
    assert_eq!(raft_id(0), 1);
    assert_eq!(node_id(raft_id(41)), 41);
}

#[test]
fn messages_for_another_node_or_past_the_log_are_refused() {
    let mut c = Cluster::new(&[0, 1, 2], 5);
    let leader = c.elect();
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let term = c.core(follower).status().term;
    let stray = Message {
        msg_type: MessageType::MsgHeartbeat,
        to: raft_id(other),
        from: raft_id(leader),
        term,
        ..Default::default()
    };
    assert!(matches!(c.core(follower).step(stray), Err(QuorumError::Misaddressed { .. })));
    let last = c.core(follower).status().last_index;
    let forged = Message {
        msg_type: MessageType::MsgHeartbeat,
        to: raft_id(follower),
        from: raft_id(leader),
        term,
        commit: last + 1_000,
        ..Default::default()
    };
    assert!(matches!(c.core(follower).step(forged), Err(QuorumError::Misaddressed { .. })));
    // Still a working follower.
    c.propose(leader, "after").unwrap();
    for _ in 0..3 {
        c.tick();
    }
    assert_eq!(c.applied(follower), vec!["after".to_string()]);
}
