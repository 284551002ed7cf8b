//! identity: users, sessions and tokens. The gateway mounts its routes itself, since it also
//! asks identity about tokens and sessions.

use super::Wired;
use anyhow::Context;
use commerce_services::identity::{self, IdentityService};
use std::path::Path;
use std::sync::Arc;

pub fn wire(dir: &Path) -> anyhow::Result<(Arc<IdentityService>, Wired)> {
    let service = IdentityService::open(dir)
        .with_context(|| format!("cannot open the identity service in {}", dir.display()))?;
    // A command: in a cluster this runs once the engine is attached to its Raft group.
    service
        .ensure_signing_key()
        .context("cannot install the token signing key")?;
    let wired = Wired {
        name: "identity",
        store: service.engine.store().clone(),
        mount: None,
        relay: Some((identity::PRODUCER_ID, service.engine.outbox_signal())),
        tasks: Vec::new(),
    };
    Ok((service, wired))
}
