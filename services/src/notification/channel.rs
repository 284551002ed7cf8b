//! The channel port and the built-in recording sink.
//!
//! A [`NotificationChannel`] delivers one rendered message (an email server, an SMS gateway,
//! a push service would each implement it). The built-in [`RecordingSink`] delivers nothing:
//! it records every message, once per message id, in an engine of its own
//! ([`super::sink_records`], its store in `<data-dir>/services/notification-sink`), which is
//! what a mail catcher is to a test system: the messages are there to read, a redelivery
//! after a crash records nothing twice, and in a cluster (the engine replicated) every node
//! delivers into the same records.

use super::model::Notification;
use super::sink_records::{MESSAGES, SinkCommand, SinkRecords};
use crate::platform::engine::CommandContext;
use crate::platform::{Engine, Store, StoreError};
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
    engine: Arc<Engine<SinkRecords>>,
}

impl RecordingSink {
    /// Opens the sink's records in `path` (their own store).
    pub fn open(path: &Path) -> Result<RecordingSink, StoreError> {
        let store = Arc::new(Store::open(path)?);
        Ok(RecordingSink {
            engine: Engine::open(store, SinkRecords)?,
        })
    }

    /// The records' engine, for the composition root to replicate like every service's. It
    /// emits no events: there is no outbox to relay.
    pub fn engine(&self) -> &Arc<Engine<SinkRecords>> {
        &self.engine
    }

    /// Every message the sink holds, by notification id.
    pub fn messages(&self) -> Result<Vec<Notification>, StoreError> {
        MESSAGES.scan(self.engine.store().as_ref())
    }

    /// How many messages the sink holds (0 when its store cannot be read).
    pub fn len(&self) -> usize {
        self.messages().map_or(0, |messages| messages.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl NotificationChannel for RecordingSink {
    async fn deliver(&self, message: Notification) -> Result<(), DeliveryError> {
        if message.address.is_none() {
            return Err(DeliveryError::Undeliverable("no_address".to_string()));
        }
        let context = CommandContext {
            correlation_id: message.origin.correlation_id.clone(),
            ..CommandContext::default()
        };
        // The log entry is synced before it is applied: recorded means durable. Apply
        // answers every Record; a rejection would be a bug, retried like an outage.
        self.engine
            .submit(SinkCommand::Record { message }, context)
            .await
            .map_err(|error| DeliveryError::Unavailable(error.to_string()))?
            .map_err(|rejection| DeliveryError::Unavailable(rejection.to_string()))?;
        Ok(())
    }
}
