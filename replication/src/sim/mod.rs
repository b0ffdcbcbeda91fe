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
//! - `workload.rs`: producers and consumers. `invariants.rs`: what is checked, and when.
//! - `regressions.rs`: the bugs found, each with a minimal test and its seed.
//!
//! Modelled: message delay with a heavy tail, loss and reordering; one-way and two-way link cuts
//! between brokers and between a broker and the controller; `kill -9` (written data survives) and
//! power loss (only fsynced data survives), alone or as an outage of several brokers at once;
//! restarts as new incarnations; fsync latency; clock drift of periodic timers; acks=all and
//! acks=1 producers with several requests in flight; consumers reading below the HW.
//!
//! Not modelled (and why): the Raft quorum, controller failover and slow commits (step 6 replaces
//! the oracle); duplicated messages (TCP); torn batches, disk errors and write latency (the engine's
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
//! too). `SIM_SEEDS=n` and `SIM_BASE_SEED=x` run another range.

mod controller;
mod disk;
mod invariants;
mod net;
mod node;
mod regressions;
mod workload;
mod world;

mod tests;
