//! The deterministic simulator, version 1 (design section 14, implementation step 4): seeded
//! discrete-event runs of one topic with one to three partitions on 3 or 5 brokers (replication
//! factor 3 or 5, `min.insync.replicas` 2), driving the real [`crate::partition_replica`] rules
//! through crashes, power losses, lost and slow messages and network partitions, with invariants
//! checked after every event.
//!
//! Where to look:
//! - `world.rs`: time, the event queue, fault injection, the run loop and its two phases.
//! - `net.rs`: messages and links. `disk.rs`: a partition log with written and durable ends.
//! - `node.rs`: a broker, the driver of the replica rules (roles, fetcher, fetch handler, acks).
//! - `controller.rs`: the oracle controller (instant commits, the real election and AlterPartition
//!   code); its `Unclean` mode is a deliberately broken variant.
//! - `voters.rs`: version 2's controller quorum (design 18, step 6), selected by
//!   `Variant::controller = ControllerMode::Raft` (`Variant::RAFT`): three voters running the real
//!   `QuorumCore` and, on the leader, `ControllerCore`, driven per net's driver contract, with
//!   their Raft messages on the simulated network; voters crash (restarting from their persisted
//!   Raft log and hard state) and are cut off. The oracle then only mirrors the committed log, and
//!   brokers send controller requests to the voter they believe active, turning elsewhere on
//!   NOT_CONTROLLER. Three more invariants: no two voters apply different entries at one index,
//!   at most one active controller per term, equal images at equal applied indexes.
//! - `workload.rs`: producers and consumers. `invariants.rs`: what is checked, and when.
//! - `regressions.rs`: the bugs found, each with a minimal test and its seed.
//!
//! Modelled: message delay with a heavy tail, loss and reordering; one-way and two-way link cuts
//! between brokers and between a broker and the controller; `kill -9` (written data survives) and
//! power loss (only fsynced data survives), alone or as an outage of several brokers at once;
//! restarts as new incarnations; fsync latency; clock drift of periodic timers; acks=all and
//! acks=1 producers with several requests in flight; consumers reading below the HW.
//!
//! Not modelled (and why): in the oracle mode, the Raft quorum, controller failover and slow
//! commits (the Raft mode has them); in the Raft mode, torn or unsynced Raft writes (a voter
//! persists instantly) and voters that are also brokers; duplicated messages (TCP); torn batches, disk errors and write latency (the engine's
//! own model and crash tests cover its files); log start moving (no retention, so the
//! OFFSET_OUT_OF_RANGE paths are barely reached); reassignment, controlled shutdown and preferred
//! elections (no such records yet in the oracle); Kafka bytes, glommio and the engine.
//!
//! One deliberate difference from design 7.2: a leader counts its **durable** end for the HW, not
//! its written end (see `node::LeaderEnd`); the design's rule loses records a consumer may have
//! read in a power outage of the whole ISR, which a test shows.
//!
//! Replay: a failure prints `SIM_SEED=0x…`, the invariant, the seed's configuration, every
//! broker's roles and logs, and the last events; `SIM_SEED=0x… cargo test -p spindle-replication
//! sim_ -- --nocapture` reruns exactly that seed (`SPINDLE_SIM_SEED`, the design's name, works
//! too). `SIM_SEEDS=n` and `SIM_BASE_SEED=x` run another range; `SIM_RAFT_SEEDS=n` the Raft mode's.

mod controller;
mod disk;
mod invariants;
mod net;
mod node;
mod regressions;
mod workload;
mod world;

mod voters;

mod tests;
