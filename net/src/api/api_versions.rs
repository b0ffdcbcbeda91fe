//! ApiVersions: the ranges in [`super::APIS`], nothing more.

use super::{encode_response, ApiSpec, Reply, RequestContext, APIS};
use crate::shard::Shard;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;
use std::rc::Rc;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::ApiVersions, min: 0, max: 4 };

fn ranges() -> Vec<ApiVersion> {
    APIS.iter()
        .map(|s| ApiVersion::default().with_api_key(s.key as i16).with_min_version(s.min).with_max_version(s.max))
        .collect()
}

pub async fn handle(
    _shard: &Rc<Shard>,
    _req: ApiVersionsRequest,
    _ctx: &RequestContext,
) -> (ApiVersionsResponse, bool) {
    (ApiVersionsResponse::default().with_api_keys(ranges()), false)
}

/// The v0-format answer to an ApiVersions version we do not support.
pub fn unsupported(correlation_id: i32) -> Reply {
    let resp = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(ranges());
    let frame = encode_response(ApiKey::ApiVersions, 0, correlation_id, &resp).ok().map(|f| vec![f.freeze()]);
    Reply { frame, api: "ApiVersions", error: true }
}
