//! The events catalog reacts to: identity's users, kept as catalog's own read model of the
//! people who write products ([`super::model::Author`]), so showing who created a product
//! never calls identity. The event payloads are read here as catalog's own view of
//! identity's published contract (API.md), not through identity's types: database per
//! service, and a change inside identity does not silently change catalog.

use super::apply::Catalog;
use super::commands::Command;
use crate::platform::consumer::Subscriber;
use crate::platform::{EventEnvelope, Rejection};
use serde::Deserialize;

pub const IDENTITY_EVENTS: &str = "identity-events";

#[derive(Deserialize)]
struct UserRegistered {
    user_id: String,
    name: String,
    roles: Vec<String>,
}

#[derive(Deserialize)]
struct UserRolesChanged {
    user_id: String,
    roles: Vec<String>,
}

#[derive(Clone, Copy)]
pub struct CatalogSubscriber;

impl Subscriber for CatalogSubscriber {
    type Machine = Catalog;
    const GROUP: &'static str = "catalog";
    const TOPICS: &'static [&'static str] = &[IDENTITY_EVENTS];

    fn command_for(
        &self,
        _topic: &str,
        event: &EventEnvelope,
    ) -> Result<Option<Command>, Rejection> {
        let command = match event.event_type.as_str() {
            "UserRegistered" => {
                let data: UserRegistered = event.data_as()?;
                Command::RecordAuthor {
                    user_id: check_id(data.user_id)?,
                    name: Some(data.name),
                    roles: Some(data.roles),
                }
            }
            "UserRolesChanged" => {
                let data: UserRolesChanged = event.data_as()?;
                Command::RecordAuthor {
                    user_id: check_id(data.user_id)?,
                    name: None,
                    roles: Some(data.roles),
                }
            }
            // Logins, password changes: nothing catalog keeps.
            _ => return Ok(None),
        };
        Ok(Some(command))
    }
}

fn check_id(user_id: String) -> Result<String, Rejection> {
    if user_id.is_empty() || user_id.len() > 128 {
        return Err(Rejection::invalid(
            "user_id",
            "a user id has 1 to 128 bytes",
        ));
    }
    Ok(user_id)
}
