//! ApiVersions: the APIs and version ranges this broker serves (from `SUPPORTED`).

use super::{SUPPORTED, supported_versions};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

pub fn handle(_request: &ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = advertised();
    response
}

fn advertised() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .filter_map(|(key, _, _)| {
            let (min, max) = supported_versions(*key)?;
            Some(
                ApiVersion::default()
                    .with_api_key(*key as i16)
                    .with_min_version(min)
                    .with_max_version(max),
            )
        })
        .collect()
}

/// The answer to an ApiVersions request in a version we cannot parse: the error plus our
/// ranges, encoded as v0, so the client can retry with a version we know (KIP-511).
pub fn unsupported_version_response() -> kafka_protocol::messages::ResponseKind {
    let mut response = ApiVersionsResponse::default();
    response.error_code = ResponseError::UnsupportedVersion.code();
    response.api_keys = advertised();
    kafka_protocol::messages::ResponseKind::ApiVersions(response)
}
