//! The recording sink's records as a state machine of their own.
//!
//! The recording sink stands for an outside email/SMS gateway that every node hands messages
//! to: what it recorded must be the same whichever node delivered. So its records are not a
//! node's file but a deterministic state machine over its own command log (its own store,
//! `<data-dir>/services/notification-sink`), which a cluster replicates like any service's.
//! A message is recorded once per message id: a redelivery after a crash, or the same
//! message handed over by another node, records nothing twice.

use super::model::Notification;
use crate::platform::store::{Table, Transaction};
use crate::platform::{CommandMeta, Rejection, StateMachine, StoreError};
use serde::{Deserialize, Serialize};

/// Every message the sink received, by notification id.
pub const MESSAGES: Table<Notification> = Table::new("message");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SinkCommand {
    /// Record a delivered message unless its id was recorded before.
    Record { message: Notification },
}

/// Whether a `Record` added the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Recorded {
    New,
    AlreadyRecorded,
}

pub struct SinkRecords;

impl StateMachine for SinkRecords {
    type Command = SinkCommand;
    type Output = Recorded;

    fn apply(
        &self,
        tx: &mut dyn Transaction,
        command: &SinkCommand,
        _meta: &CommandMeta,
    ) -> Result<Result<Recorded, Rejection>, StoreError> {
        match command {
            SinkCommand::Record { message } => {
                if MESSAGES.get(tx, &message.notification_id)?.is_some() {
                    return Ok(Ok(Recorded::AlreadyRecorded));
                }
                MESSAGES.put(tx, &message.notification_id, message)?;
                Ok(Ok(Recorded::New))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::notification::channel::{DeliveryError, NotificationChannel, RecordingSink};
    use crate::notification::model::{Channel, DeliveryStatus, Origin};
    use crate::platform::engine::CommandContext;

    fn message(id: &str, subject: &str, address: Option<&str>) -> Notification {
        Notification {
            notification_id: id.to_string(),
            recipient_id: "user-1".to_string(),
            channel: Channel::Email,
            template: "welcome".to_string(),
            address: address.map(str::to_string),
            subject: subject.to_string(),
            body: "Hello".to_string(),
            status: DeliveryStatus::Pending,
            failure_reason: None,
            origin: Origin::default(),
            created_at_ms: 1,
            updated_at_ms: 1,
        }
    }

    #[tokio::test]
    async fn the_sink_records_a_message_once_however_often_it_is_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let sink = RecordingSink::open(&dir.path().join("sink")).unwrap();
        let raft = crate::platform::testing::single_node(dir.path()).await;
        crate::platform::testing::attach(&raft, sink.engine()).await;
        let first = message("n1", "Welcome", Some("ada@example.com"));
        sink.deliver(first.clone()).await.unwrap();
        // Handed over again (a redelivery, or another node's worker): still one record, the
        // first one.
        sink.deliver(message("n1", "Welcome again", Some("ada@example.com")))
            .await
            .unwrap();
        let answer = sink
            .engine()
            .submit(
                SinkCommand::Record { message: first },
                CommandContext::default(),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer, Recorded::AlreadyRecorded);
        let messages = sink.messages().unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].subject, "Welcome");

        // No address: refused before it reaches the records.
        let refused = sink.deliver(message("n2", "Welcome", None)).await;
        assert!(matches!(refused, Err(DeliveryError::Undeliverable(_))));
        assert_eq!(sink.len(), 1);

        // The records outlive a restart.
        raft.shutdown().await;
        drop(sink);
        let sink = RecordingSink::open(&dir.path().join("sink")).unwrap();
        assert_eq!(sink.len(), 1);
    }
}
