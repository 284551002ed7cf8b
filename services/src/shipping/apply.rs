//! The shipping state machine.

use super::carrier::CarrierToken;
use super::commands::Command;
use super::events::{self, TOPIC};
use super::model::{
    Address, FailedShipment, HistoryEntry, Shipment, ShipmentItem, ShipmentStatus, tracking_number,
};
use super::rates::{MAX_WEIGHT_GRAMS, Method, cost_cents};
use crate::platform::Money;
use crate::platform::store::{Table, Transaction, UniqueIndex};
use crate::platform::time::rfc3339;
use crate::platform::{CommandMeta, Rejection, StateMachine, StoreError};

/// Shipments by order id.
pub const SHIPMENTS: Table<Shipment> = Table::new("shipment");
/// Refused CreateShipment commands by order id.
pub const FAILURES: Table<FailedShipment> = Table::new("failure");
/// Tracking number -> order id (the carrier knows only the tracking number).
pub const TRACKING: UniqueIndex = UniqueIndex::new("tracking");
/// The carrier's webhook token: one record, under [`CARRIER_TOKEN_ID`].
pub const CARRIER_TOKEN: Table<CarrierToken> = Table::new("carrier_token");
pub const CARRIER_TOKEN_ID: &str = "current";

pub struct Shipping;

impl StateMachine for Shipping {
    type Command = Command;
    /// The shipment after an HTTP status change; None for the saga's commands.
    type Output = Option<Shipment>;

    fn apply(
        &self,
        tx: &mut dyn Transaction,
        command: &Command,
        meta: &CommandMeta,
    ) -> Result<Result<Option<Shipment>, Rejection>, StoreError> {
        match command {
            Command::Create {
                shipment_id,
                order_id,
                customer_id,
                address,
                items,
                method,
            } => {
                let request = CreateRequest {
                    shipment_id,
                    order_id,
                    customer_id,
                    address,
                    items,
                    method,
                };
                create(tx, meta, &request)?;
                Ok(Ok(None))
            }
            Command::Cancel { order_id, reason } => {
                let Some(mut shipment) = SHIPMENTS.get(tx, order_id)? else {
                    tracing::info!(%order_id, "CancelShipment for an order with no shipment");
                    return Ok(Ok(None));
                };
                if !shipment.status.may_become(ShipmentStatus::Cancelled) {
                    // The contract: refused once dispatched; the saga learns it from the
                    // shipment's own events, so nothing is emitted here.
                    tracing::warn!(%order_id, status = shipment.status.as_str(), "CancelShipment refused: the shipment is past created");
                    return Ok(Ok(None));
                }
                record(
                    &mut shipment,
                    meta,
                    ShipmentStatus::Cancelled,
                    None,
                    Some(reason),
                );
                SHIPMENTS.put(tx, order_id, &shipment)?;
                let data = events::ShipmentCancelled {
                    shipment_id: &shipment.shipment_id,
                    order_id,
                    customer_id: &shipment.customer_id,
                    reason,
                };
                tx.emit(
                    TOPIC,
                    meta.event(events::SHIPMENT_CANCELLED, order_id, 1, data)?,
                );
                Ok(Ok(None))
            }
            Command::UpdateStatus {
                order_id,
                status,
                location,
                note,
            } => {
                let Some(mut shipment) = SHIPMENTS.get(tx, order_id)? else {
                    return Ok(Err(Rejection::not_found("shipment")));
                };
                if !shipment.status.may_become(*status) {
                    return Ok(Err(Rejection::conflict(
                        "invalid_state",
                        Some("status"),
                        format!(
                            "a {} shipment cannot become {}",
                            shipment.status.as_str(),
                            status.as_str()
                        ),
                    )));
                }
                record(
                    &mut shipment,
                    meta,
                    *status,
                    location.as_deref(),
                    note.as_deref(),
                );
                SHIPMENTS.put(tx, order_id, &shipment)?;
                emit_status_change(tx, meta, &shipment)?;
                Ok(Ok(Some(shipment)))
            }
            Command::InstallCarrierToken { token } => {
                // No event: a credential never goes to a topic.
                if CARRIER_TOKEN.get(tx, CARRIER_TOKEN_ID)?.is_none() {
                    CARRIER_TOKEN.put(tx, CARRIER_TOKEN_ID, token)?;
                }
                Ok(Ok(None))
            }
        }
    }
}

struct CreateRequest<'a> {
    shipment_id: &'a str,
    order_id: &'a str,
    customer_id: &'a str,
    address: &'a Address,
    items: &'a [ShipmentItem],
    method: &'a str,
}

/// Creates the order's shipment, or records why not. A repeated command answers as the
/// first did while that answer still stands, and never makes a second shipment.
fn create(
    tx: &mut dyn Transaction,
    meta: &CommandMeta,
    request: &CreateRequest<'_>,
) -> Result<(), StoreError> {
    let order_id = request.order_id;
    if let Some(shipment) = SHIPMENTS.get(tx, order_id)? {
        if shipment.status == ShipmentStatus::Created {
            emit_created(tx, meta, &shipment)?;
        } else {
            tracing::info!(%order_id, status = shipment.status.as_str(), "CreateShipment for a shipment past created: nothing to answer");
        }
        return Ok(());
    }
    if let Some(failure) = FAILURES.get(tx, order_id)? {
        emit_failed(tx, meta, &failure)?;
        return Ok(());
    }
    match plan(request) {
        Ok((address, zone, method, weight_grams)) => {
            let tracking = tracking_number(request.shipment_id);
            let mut shipment = Shipment {
                shipment_id: request.shipment_id.to_string(),
                order_id: order_id.to_string(),
                customer_id: request.customer_id.to_string(),
                address,
                items: request.items.to_vec(),
                method,
                zone,
                weight_grams,
                cost: Money {
                    amount: cost_cents(weight_grams, zone, method),
                    currency: "USD".to_string(),
                },
                tracking_number: tracking.clone(),
                status: ShipmentStatus::Created,
                history: Vec::new(),
                created_at_ms: meta.at_ms,
                updated_at_ms: meta.at_ms,
            };
            record(&mut shipment, meta, ShipmentStatus::Created, None, None);
            SHIPMENTS.put(tx, order_id, &shipment)?;
            TRACKING.put(tx, &tracking, order_id);
            emit_created(tx, meta, &shipment)?;
        }
        Err((reason, message)) => {
            let failure = FailedShipment {
                order_id: order_id.to_string(),
                customer_id: request.customer_id.to_string(),
                reason: reason.to_string(),
                message,
            };
            FAILURES.put(tx, order_id, &failure)?;
            emit_failed(tx, meta, &failure)?;
        }
    }
    Ok(())
}

/// The checked address, its zone, the method and the total weight; or (reason, message).
fn plan(
    request: &CreateRequest<'_>,
) -> Result<(Address, super::rates::Zone, Method, u64), (&'static str, String)> {
    let (address, zone) = request
        .address
        .validate()
        .map_err(|rejection| ("invalid_address", rejection.message))?;
    let method = Method::parse(request.method).ok_or_else(|| {
        (
            "invalid_method",
            format!("{} is not standard or express", request.method),
        )
    })?;
    let weight_grams = request.items.iter().fold(0u64, |total, item| {
        total.saturating_add(item.weight_grams.saturating_mul(item.quantity))
    });
    if weight_grams > MAX_WEIGHT_GRAMS {
        return Err((
            "too_heavy",
            format!("{weight_grams} g is over the carrier's {MAX_WEIGHT_GRAMS} g"),
        ));
    }
    Ok((address, zone, method, weight_grams))
}

fn record(
    shipment: &mut Shipment,
    meta: &CommandMeta,
    status: ShipmentStatus,
    location: Option<&str>,
    note: Option<&str>,
) {
    shipment.status = status;
    shipment.updated_at_ms = meta.at_ms;
    shipment.history.push(HistoryEntry {
        status,
        at: rfc3339(meta.at_ms),
        location: location.map(str::to_string),
        note: note.map(str::to_string),
    });
}

fn emit_created(
    tx: &mut dyn Transaction,
    meta: &CommandMeta,
    shipment: &Shipment,
) -> Result<(), StoreError> {
    let data = events::ShipmentCreated {
        shipment_id: &shipment.shipment_id,
        order_id: &shipment.order_id,
        customer_id: &shipment.customer_id,
        tracking_number: &shipment.tracking_number,
        cost: &shipment.cost,
        method: shipment.method.as_str(),
    };
    let event = meta.event(events::SHIPMENT_CREATED, &shipment.order_id, 1, data)?;
    tx.emit(TOPIC, event);
    Ok(())
}

fn emit_failed(
    tx: &mut dyn Transaction,
    meta: &CommandMeta,
    failure: &FailedShipment,
) -> Result<(), StoreError> {
    let data = events::ShipmentFailed {
        order_id: &failure.order_id,
        customer_id: &failure.customer_id,
        reason: &failure.reason,
    };
    let event = meta.event(events::SHIPMENT_FAILED, &failure.order_id, 1, data)?;
    tx.emit(TOPIC, event);
    Ok(())
}

/// ShipmentDispatched / ShipmentDelivered for those steps, and a TrackingUpdated for every
/// step (with the carrier's location and note), so a tracking view needs one event type.
fn emit_status_change(
    tx: &mut dyn Transaction,
    meta: &CommandMeta,
    shipment: &Shipment,
) -> Result<(), StoreError> {
    let order_id = shipment.order_id.as_str();
    let moved = events::ShipmentMoved {
        shipment_id: &shipment.shipment_id,
        order_id,
        customer_id: &shipment.customer_id,
        tracking_number: &shipment.tracking_number,
    };
    match shipment.status {
        ShipmentStatus::Dispatched => {
            let event = meta.event(events::SHIPMENT_DISPATCHED, order_id, 1, moved)?;
            tx.emit(TOPIC, event);
        }
        ShipmentStatus::Delivered => {
            let event = meta.event(events::SHIPMENT_DELIVERED, order_id, 1, moved)?;
            tx.emit(TOPIC, event);
        }
        _ => {}
    }
    let last = shipment.history.last();
    let data = events::TrackingUpdated {
        shipment_id: &shipment.shipment_id,
        order_id,
        customer_id: &shipment.customer_id,
        tracking_number: &shipment.tracking_number,
        status: shipment.status.as_str(),
        location: last.and_then(|entry| entry.location.as_deref()),
        note: last.and_then(|entry| entry.note.as_deref()),
    };
    tx.emit(
        TOPIC,
        meta.event(events::TRACKING_UPDATED, order_id, 1, data)?,
    );
    Ok(())
}
