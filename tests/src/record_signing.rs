//! The platform's record signature, computed from its documented format (README,
//! "Security"), not from the services crate: what an operator's tool holding the node's
//! record key does to write a record the services accept, and what the tests use to drive
//! a service through its topics.
//!
//! `commerce-signature: v1:<key id>:<mac>`, where mac = HMAC-SHA256(key, "commerce record
//! v1" + topic + key + value, each part a 0 byte when absent, else a 1 byte, its length as
//! 8 bytes big-endian and its bytes), key id = the first 4 bytes of HMAC-SHA256(key,
//! "commerce record key id v1"), both in lowercase hex. The key is 32 bytes, 64 hex digits
//! in `<data-dir>/services/record-signing-key` (the same on every node of a cluster).

use std::path::Path;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::node::Node;

pub const HEADER: &str = "commerce-signature";
/// Where a node keeps its copy of the key, under its data directory.
pub const KEY_FILE: &str = "services/record-signing-key";

#[derive(Clone, Debug)]
pub struct RecordKey {
    bytes: Vec<u8>,
}

impl RecordKey {
    /// The node's record key, waiting for the node to have written it (it does once its
    /// services have installed their shared secrets, shortly after start).
    pub fn of(node: &Node) -> RecordKey {
        RecordKey::read_waiting(&node.data_dir().join(KEY_FILE), Duration::from_secs(60))
    }

    pub fn read_waiting(path: &Path, limit: Duration) -> RecordKey {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                let text = text.trim();
                if text.len() == 64 {
                    let bytes = (0..64)
                        .step_by(2)
                        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex key"))
                        .collect();
                    return RecordKey { bytes };
                }
            }
            assert!(
                Instant::now() < deadline,
                "no record signing key in {} after {limit:?}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.bytes).expect("HMAC takes any key")
    }

    pub fn id(&self) -> String {
        let mut mac = self.mac();
        mac.update(b"commerce record key id v1");
        hex(&mac.finalize().into_bytes()[..4])
    }

    /// The `commerce-signature` header value for a record.
    pub fn sign(&self, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>) -> String {
        let mut mac = self.mac();
        mac.update(b"commerce record v1");
        for part in [Some(topic.as_bytes()), key, value] {
            match part {
                None => mac.update(&[0]),
                Some(bytes) => {
                    mac.update(&[1]);
                    mac.update(&(bytes.len() as u64).to_be_bytes());
                    mac.update(bytes);
                }
            }
        }
        format!("v1:{}:{}", self.id(), hex(&mac.finalize().into_bytes()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
