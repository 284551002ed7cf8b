//! Node-to-node frames.
//!
//! Every frame is a 4-byte big-endian length followed by a CBOR body (serde, self-describing,
//! with byte strings, so a command's bytes travel as they are). A request carries a
//! request id (unique per connection, for correlation), the group id it is for and one
//! openraft RPC; the answer carries the same request id. Because every frame names its
//! group, one connection carries the RPCs of every group the two nodes share, and answers
//! may come back in any order.
//!
//! A decode failure means a corrupt or foreign stream: the connection is dropped.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::types::{Command, GroupId, NodeId, TypeConfig};

/// The largest frame either side accepts: a snapshot chunk or a batch of entries is well
/// below it; anything larger is a corrupt or hostile stream and ends the connection.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// One RPC for one group.
#[derive(Debug, Serialize, Deserialize)]
pub struct RequestFrame {
    pub id: u64,
    pub group: GroupId,
    pub rpc: Rpc,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Rpc {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A command forwarded by a node that is not the group's leader. The receiver proposes
    /// it only if it leads; it never forwards again, so a stale leader view cannot loop.
    Propose(Command),
    /// A read barrier's question to the group's leader: the index a linearizable read must
    /// wait for (Raft's ReadIndex). The leader confirms its leadership with a majority first.
    ReadIndex,
    /// A membership change for the group's leader to make (a node added to or removed
    /// from every service group by `add-node` / `remove-node` on whichever node runs it).
    ChangeMembers(MemberChange),
}

/// A change of a group's voters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MemberChange {
    /// Add `node` (Raft address `addr`): it catches up as a learner, then votes.
    Add { node: NodeId, addr: String },
    /// Remove `node` from the voters.
    Remove { node: NodeId },
}

/// The answer to the request with the same id.
#[derive(Debug, Serialize, Deserialize)]
pub struct ResponseFrame {
    pub id: u64,
    pub reply: Reply,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Propose(Result<Vec<u8>, ForwardRefused>),
    ReadIndex(Result<u64, ForwardRefused>),
    ChangeMembers(Result<(), ForwardRefused>),
    /// The receiving node hosts no such group (not created yet there, or being removed).
    UnknownGroup,
}

/// Why a forwarded proposal was not applied.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardRefused {
    #[error("not the leader (leader: {0:?})")]
    NotLeader(Option<NodeId>),
    #[error("{0}")]
    Failed(String),
}

impl ForwardRefused {
    /// The facility's error for a request the receiving node refused.
    pub fn into_error(self, group: GroupId) -> super::error::RaftGroupError {
        match self {
            ForwardRefused::NotLeader(leader) => {
                super::error::RaftGroupError::NotLeader { group, leader }
            }
            ForwardRefused::Failed(message) => {
                super::error::RaftGroupError::Raft { group, message }
            }
        }
    }
}

/// Frames `body` (length prefix + body) into `out`.
pub fn put_frame(out: &mut Vec<u8>, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&len| len as usize <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// Serializes and frames `message`.
pub fn encode<T: Serialize>(message: &T) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    ciborium::into_writer(message, &mut body)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut out = Vec::with_capacity(body.len() + 4);
    put_frame(&mut out, &body)?;
    Ok(out)
}

/// Deserializes a frame body read by [`read_frame`].
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> std::io::Result<T> {
    ciborium::from_reader(body)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// Reads one frame's body; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[tokio::test]
    async fn frames_roundtrip_and_oversized_lengths_are_refused() {
        let mut bytes = encode(&ResponseFrame {
            id: 7,
            reply: Reply::UnknownGroup,
        })
        .unwrap();
        bytes.extend_from_slice(
            &encode(&ResponseFrame {
                id: 8,
                reply: Reply::UnknownGroup,
            })
            .unwrap(),
        );
        let mut reader = bytes.as_slice();
        for expected in [7, 8] {
            let body = read_frame(&mut reader).await.unwrap().unwrap();
            let frame: ResponseFrame = decode(&body).unwrap();
            assert_eq!(frame.id, expected);
        }
        assert!(read_frame(&mut reader).await.unwrap().is_none());

        let huge = u32::MAX.to_be_bytes();
        assert!(read_frame(&mut huge.as_slice()).await.is_err());
        assert!(decode::<ResponseFrame>(b"xyz").is_err());
    }

    #[test]
    fn a_command_travels_as_raw_bytes() {
        let command = Command(vec![0xab; 1000]);
        let frame = encode(&RequestFrame {
            id: 1,
            group: GroupId(9),
            rpc: Rpc::Propose(command.clone()),
        })
        .unwrap();
        assert!(
            frame.len() < 1100,
            "{} bytes for a 1000-byte command",
            frame.len()
        );
        let decoded: RequestFrame = decode(frame.get(4..).unwrap()).unwrap();
        assert!(matches!(decoded.rpc, Rpc::Propose(c) if c == command));
        assert_eq!(decoded.group, GroupId(9));
    }
}
