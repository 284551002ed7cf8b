//! The Kafka wire protocol, without I/O: length-prefixed framing and the request/response
//! codec over the kafka-protocol crate's generated messages.

pub mod codec;
pub mod frame;
