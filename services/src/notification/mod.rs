//! Notification: tells customers what happened (welcome, order confirmed, payment received,
//! shipment delivered) from the events of identity, order, payment and shipping. Templates
//! with `{{variables}}` are stored and admin-editable; messages go out through a
//! [`channel::NotificationChannel`] (the built-in [`channel::RecordingSink`] records them)
//! by the [`worker::DeliveryWorker`], outside the state machine, and each outcome is an event
//! on `notification-events` (NotificationSent / NotificationFailed).

pub mod apply;
pub mod channel;
pub mod commands;
pub mod consumers;
pub mod events;
pub mod model;
pub mod routes;
pub mod sink_records;
pub mod templates;
pub mod worker;

#[cfg(test)]
mod tests;

use crate::platform::engine::CommandContext;
use crate::platform::{Engine, ReadTx, Store, StoreError};
use apply::{Notifications, TEMPLATES};
use channel::RecordingSink;
use commands::Command;
use std::path::Path;
use std::sync::Arc;

/// The producer id notification's outbox relay publishes with.
pub const PRODUCER_ID: i64 = 0x4000_0000_0000_0007;

pub struct NotificationService {
    pub engine: Arc<Engine<Notifications>>,
    pub sink: RecordingSink,
}

impl NotificationService {
    /// Opens the service (its templates are seeded by [`NotificationService::seed_templates`]
    /// once its command log is open).
    pub fn open(services_dir: &Path) -> Result<Arc<NotificationService>, StoreError> {
        let store = Arc::new(Store::open(&services_dir.join("notification"))?);
        let engine = Engine::open(store, Notifications)?;
        let sink = RecordingSink::open(&services_dir.join("notification-sink"))?;
        Ok(Arc::new(NotificationService { engine, sink }))
    }

    /// Stores the default templates unless every kind has one; run by the group's leader
    /// (seeding twice is harmless: apply keeps templates already there).
    pub async fn seed_templates(&self) -> Result<(), StoreError> {
        let stored: &dyn ReadTx = self.engine.store().as_ref();
        if TEMPLATES.scan(stored)?.len() >= templates::KINDS.len() {
            return Ok(());
        }
        let defaults = templates::KINDS
            .iter()
            .map(templates::Kind::default_template)
            .collect();
        let context = CommandContext {
            correlation_id: "notification-seed".to_string(),
            ..CommandContext::default()
        };
        if let Err(rejection) = self
            .engine
            .submit(Command::SeedTemplates(defaults), context)
            .await?
        {
            tracing::error!(%rejection, "cannot seed the notification templates");
        }
        Ok(())
    }

    pub fn router(self: &Arc<Self>) -> axum::Router {
        routes::router(self.clone())
    }

    pub fn worker(&self) -> worker::DeliveryWorker<RecordingSink> {
        worker::DeliveryWorker {
            engine: self.engine.clone(),
            channel: self.sink.clone(),
        }
    }
}
