//! The channel port and the built-in recording sink.
//!
//! A [`NotificationChannel`] delivers one rendered message (an email server, an SMS gateway,
//! a push service would each implement it). The built-in [`RecordingSink`] delivers nothing:
//! it records every message in its own fjall database (`<data-dir>/services/notification-sink`),
//! once per message id, which is what a mail catcher is to a test system: the messages are
//! there to read, and a redelivery after a crash records nothing twice.

use super::model::Notification;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The message cannot be delivered, ever (no address): recorded as failed.
    #[error("{0}")]
    Undeliverable(String),
    /// The channel is down: the worker tries again later.
    #[error("channel unavailable: {0}")]
    Unavailable(String),
}

pub trait NotificationChannel: Send + Sync + 'static {
    fn deliver(
        &self,
        message: Notification,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;
}

#[derive(Clone)]
pub struct RecordingSink {
    inner: Arc<(Database, Keyspace)>,
}

impl RecordingSink {
    pub fn open(path: &Path) -> Result<RecordingSink, fjall::Error> {
        let db = Database::builder(path).open()?;
        let messages = db.keyspace("messages", KeyspaceCreateOptions::default)?;
        Ok(RecordingSink {
            inner: Arc::new((db, messages)),
        })
    }

    /// How many messages the sink holds.
    pub fn len(&self) -> usize {
        self.inner.1.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn record(&self, message: &Notification) -> Result<(), DeliveryError> {
        let unavailable =
            |error: &dyn std::fmt::Display| DeliveryError::Unavailable(error.to_string());
        let (db, messages) = self.inner.as_ref();
        let bytes = serde_json::to_vec(message).map_err(|e| unavailable(&e))?;
        messages
            .insert(&message.notification_id, bytes)
            .map_err(|e| unavailable(&e))?;
        db.persist(PersistMode::SyncData)
            .map_err(|e| unavailable(&e))?;
        Ok(())
    }
}

impl NotificationChannel for RecordingSink {
    async fn deliver(&self, message: Notification) -> Result<(), DeliveryError> {
        if message.address.is_none() {
            return Err(DeliveryError::Undeliverable("no_address".to_string()));
        }
        let sink = self.clone();
        tokio::task::spawn_blocking(move || sink.record(&message))
            .await
            .map_err(|error| DeliveryError::Unavailable(error.to_string()))?
    }
}
