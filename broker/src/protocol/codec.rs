//! Decoding request frames into typed requests and encoding typed responses into frames.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame too short for a request header")]
    Truncated,
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} v{version} is not supported")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode {api:?} v{version} response: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

pub struct Request {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Decodes a frame body; versions outside what the crate can decode are reported with the
/// correlation id so that ApiVersions can still answer UNSUPPORTED_VERSION.
pub fn decode_request(
    mut frame: Bytes,
    supported: impl Fn(ApiKey) -> Option<(i16, i16)>,
) -> Result<Request, CodecError> {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(frame.get(0..8).ok_or(CodecError::Truncated)?);
    let [k0, k1, v0, v1, c0, c1, c2, c3] = prefix;
    let raw_key = i16::from_be_bytes([k0, k1]);
    let version = i16::from_be_bytes([v0, v1]);
    let correlation_id = i32::from_be_bytes([c0, c1, c2, c3]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| CodecError::UnknownApiKey(raw_key))?;
    match supported(api_key) {
        Some((min, max)) if (min..=max).contains(&version) => {}
        _ => {
            return Err(CodecError::UnsupportedVersion {
                api: api_key,
                version,
                correlation_id,
            });
        }
    }
    let malformed = |error: anyhow::Error| CodecError::Malformed {
        api: api_key,
        version,
        reason: format!("{error:#}"),
    };
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(malformed)?;
    let body = RequestKind::decode(api_key, &mut frame, version).map_err(malformed)?;
    Ok(Request {
        api_key,
        header,
        body,
    })
}

/// Encodes a response frame (length prefix, header, body) onto `out`.
pub fn encode_response(
    out: &mut BytesMut,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<(), CodecError> {
    let encode_error = |error: anyhow::Error| CodecError::Encode {
        api: api_key,
        version,
        reason: format!("{error:#}"),
    };
    let start = out.len();
    out.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header
        .encode(out, api_key.response_header_version(version))
        .map_err(encode_error)?;
    body.encode(out, version).map_err(encode_error)?;
    let length = i32::try_from(out.len() - start - 4).map_err(|_| CodecError::Encode {
        api: api_key,
        version,
        reason: "response larger than 2 GiB".to_string(),
    })?;
    if let Some(prefix) = out.get_mut(start..start + 4) {
        prefix.copy_from_slice(&length.to_be_bytes());
    }
    Ok(())
}
