//! Metadata records and the image every broker applies them to.
//!
//! `records`: what the quorum agrees on and its JSON batch codec. `image`: the state machine over
//! those records, applied in Raft order by every broker, and the delta each entry produces.
//! `placement`: where a new topic's replicas go. The controller's decisions that produce records
//! live in [`crate::controller`].

pub mod image;
pub mod placement;
pub mod records;

pub use image::{
    ApplyError, BrokerRegistration, Change, MetadataDelta, MetadataImage, PartitionRegistration, RegistrationError,
    RejectedRecord, TopicImage,
};
pub use placement::{
    place_replicas, validate_manual_assignment, validate_manual_assignments, AssignmentError, PlacementError,
    UsableBroker,
};
pub use records::{
    decode_batch, encode_batch, BrokerEpoch, ConfigResource, DecodeError, LeaderChange, MetadataRecord,
    PartitionChangeRecord, PartitionRecord, RegisterBrokerRecord, METADATA_BATCH_VERSION,
};
