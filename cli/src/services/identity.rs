//! identity: users, sessions and tokens. The gateway mounts its routes itself, since it also
//! asks identity about tokens and sessions.

use super::{ServiceEngine, Wired};
use anyhow::Context;
use commerce_services::identity::{self, IdentityService};
use std::path::Path;
use std::sync::Arc;

pub fn wire(dir: &Path) -> anyhow::Result<(Arc<IdentityService>, Wired)> {
    let service = IdentityService::open(dir)
        .with_context(|| format!("cannot open the identity service in {}", dir.display()))?;
    let wired = Wired {
        name: "identity",
        engine: service.engine.clone() as Arc<dyn ServiceEngine>,
        mount: None,
        producer_id: Some(identity::PRODUCER_ID),
        tasks: Vec::new(),
    };
    Ok((service, wired))
}
