//! The delivery worker: hands each pending message to the channel and records the answer as
//! a command (NotificationSent / NotificationFailed). What is pending is in the store, so a
//! crash only means the message is handed over again; the sink records a message id once.

use super::apply::{NOTIFICATIONS, Notifications, PENDING};
use super::channel::{DeliveryError, NotificationChannel};
use super::commands::Command;
use crate::platform::engine::CommandContext;
use crate::platform::{Engine, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const IDLE_POLL: Duration = Duration::from_millis(100);
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

pub struct DeliveryWorker<C: NotificationChannel> {
    pub engine: Arc<Engine<Notifications>>,
    pub channel: C,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Channel(String),
}

impl<C: NotificationChannel> DeliveryWorker<C> {
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        loop {
            if *stopped.borrow() {
                return;
            }
            let delay = match self.work_once().await {
                Ok(0) => IDLE_POLL,
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(%error, "notification worker failed; retrying");
                    RETRY_BACKOFF
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped.changed() => return,
            }
        }
    }

    pub(crate) async fn work_once(&self) -> Result<usize, WorkError> {
        let store: &Store = self.engine.store().as_ref();
        let pending = PENDING.scan(store)?;
        for key in &pending {
            let Some(message) = NOTIFICATIONS.get(store, key)? else {
                continue;
            };
            let outcome = match self.channel.deliver(message.clone()).await {
                Ok(()) => Ok(()),
                Err(DeliveryError::Undeliverable(reason)) => Err(reason),
                Err(DeliveryError::Unavailable(reason)) => return Err(WorkError::Channel(reason)),
            };
            let context = CommandContext {
                correlation_id: message.origin.correlation_id.clone(),
                causation_id: message.origin.causation_id.clone(),
                traceparent: message.origin.traceparent.clone(),
                consumed_event: None,
            };
            let command = Command::RecordDelivery {
                recipient_id: message.recipient_id.clone(),
                notification_id: message.notification_id.clone(),
                outcome,
            };
            if let Err(rejection) = self.engine.submit(command, context).await? {
                tracing::error!(%rejection, "a delivery outcome was rejected");
            }
        }
        Ok(pending.len())
    }
}
