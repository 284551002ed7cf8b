//! The reservation expiry worker: once a second, if a held reservation is past its expiry,
//! it submits `ExpireReservations { now }` with the clock read here, before submit, so apply
//! (and any replay of it) releases exactly the same reservations.

use super::InventoryService;
use super::apply::HOLDS;
use super::commands::Command;
use crate::platform::engine::CommandContext;
use crate::platform::time::now_ms;
use crate::platform::{ReadTx, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Runs until `stopped` turns true.
pub async fn run(service: Arc<InventoryService>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            _ = stopped.changed() => return,
        }
        if *stopped.borrow() {
            return;
        }
        if let Err(error) = sweep(&service).await {
            tracing::warn!(%error, "reservation expiry sweep failed; trying again next tick");
        }
    }
}

async fn sweep(service: &Arc<InventoryService>) -> Result<(), StoreError> {
    let now = now_ms();
    // Most ticks have nothing to expire; checking the committed holds first keeps those
    // ticks out of the command log. Apply checks again, against the state it applies to.
    let store: &dyn ReadTx = service.engine.store().as_ref();
    let due = HOLDS
        .scan(store)?
        .first()
        .is_some_and(|hold| hold.expires_at_ms <= now);
    if !due {
        return Ok(());
    }
    let context = CommandContext {
        correlation_id: format!("inventory-expiry-{now}"),
        ..CommandContext::default()
    };
    if let Err(rejection) = service
        .engine
        .submit(Command::ExpireReservations { now_ms: now }, context)
        .await?
    {
        tracing::warn!(%rejection, "the expiry sweep was refused");
    }
    Ok(())
}
