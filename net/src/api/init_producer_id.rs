//! InitProducerId: a producer id and epoch for an idempotent producer
//! (kafka-python 3, the Java client since 3.0 and franz-go enable
//! idempotence by default). Each call gets a new id at epoch 0, as Kafka
//! gives a producer without a transactional id; the partitions' leaders
//! check its sequence numbers ([`spindle_engine::producers`]).
//! Transactions are not implemented: a transactional id is refused.

use super::{ApiSpec, RequestContext};
use crate::shard::Shard;
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::InitProducerId, min: 0, max: 4 };

pub async fn handle(
    shard: &Rc<Shard>,
    req: InitProducerIdRequest,
    ctx: &RequestContext,
) -> (InitProducerIdResponse, bool) {
    let failed = |e: ResponseError| {
        let resp = InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        (resp, true)
    };
    if let Some(id) = &req.transactional_id {
        tracing::warn!(peer = ?ctx.peer, transactional_id = %id.0, "InitProducerId refused: transactions are not implemented");
        return failed(ResponseError::InvalidRequest);
    }
    match shard.registry.new_producer_id(shard.config.node_id) {
        Ok(id) => (InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(0), false),
        Err(e) => {
            tracing::error!(error = %e, "cannot hand out a producer id");
            failed(ResponseError::UnknownServerError)
        }
    }
}
