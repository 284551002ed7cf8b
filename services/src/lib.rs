//! commerce-services: the domain services and the platform they are built on.
//!
//! Each service is a deterministic state machine over its own command log and its own store
//! ("database per service"), publishing events through a transactional outbox to the
//! [`platform::EventLog`] port; it does not know the broker. Each service module has the same
//! shape: `model.rs` (records, value objects), `commands.rs`, `events.rs`, `apply.rs` (the
//! state machine), `routes.rs` (HTTP, mounted by the gateway under `/api/<service>`).
//!
//! Services here: [`identity`] (users, sessions, tokens), [`catalog`] (products),
//! [`inventory`] (stock, reservations), [`payment`] (charges, refunds), [`shipping`]
//! (shipments, carrier updates), [`notification`] (templates, messages), [`analytics`]
//! (aggregates over every domain topic) and [`order`] (orders and the order saga).

pub mod analytics;
pub mod catalog;
pub mod identity;
pub mod inventory;
pub mod notification;
pub mod order;
pub mod payment;
pub mod platform;
pub mod shipping;
