//! The order state machine: persists each order with its saga and, in the same apply, emits
//! what the saga's transition asks for (order events and participant commands go through the
//! outbox together with the state change, so a crash never loses or half-sends a step).

use super::commands::{Command, NewOrder};
use super::events as ev;
use super::model::Order;
use super::placement::{PLACEMENTS, Placed, placement_key, same_request};
use super::saga::{Action, Saga};
use crate::platform::store::{Table, Transaction};
use crate::platform::time::rfc3339;
use crate::platform::{CommandMeta, Rejection, StateMachine, StoreError};
use serde::{Deserialize, Serialize};

pub const ORDERS: Table<Order> = Table::new("order");
/// `<customer id>/<created at, zero-padded ms>/<order id>` -> order id: a customer's orders in
/// time order without scanning everyone's.
pub const BY_CUSTOMER: Table<String> = Table::new("customer_order");
/// Orders with a step in progress, by order id: what the clock looks at.
pub const OPEN_STEPS: Table<OpenStep> = Table::new("open_step");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenStep {
    pub order_id: String,
    pub deadline_ms: i64,
}

/// How long a reservation outlives the order's start, in step timeouts: reserve, pay and ship
/// must all fit before the saga confirms it (ConfirmReservation stops the expiry).
const RESERVATION_STEPS: i64 = 4;

pub fn customer_key(customer_id: &str, created_at_ms: i64, order_id: &str) -> String {
    format!("{customer_id}/{created_at_ms:015}/{order_id}")
}

pub struct Orders;

impl StateMachine for Orders {
    type Command = Command;
    /// The order after the command; None when nothing changed (a reply not for any order or
    /// not fitting its step, a tick) .
    type Output = Option<Order>;

    fn apply(
        &self,
        tx: &mut dyn Transaction,
        command: &Command,
        meta: &CommandMeta,
    ) -> Result<Result<Option<Order>, Rejection>, StoreError> {
        match command {
            Command::Place(new) => place(tx, new, meta),
            Command::Reply { order_id, reply } => {
                let Some(mut order) = ORDERS.get(tx, order_id)? else {
                    // Not one of ours (or not any more): nothing to do, and not the event's
                    // fault, so it must not be retried or dead-lettered.
                    return Ok(Ok(None));
                };
                let Some(actions) = order.saga.on_reply(reply, meta.at_ms) else {
                    return Ok(Ok(None));
                };
                save(tx, &order, &actions, meta)?;
                Ok(Ok(Some(order)))
            }
            Command::Tick { now_ms } => {
                for open in OPEN_STEPS.scan(tx)? {
                    if open.deadline_ms > *now_ms {
                        continue;
                    }
                    let Some(mut order) = ORDERS.get(tx, &open.order_id)? else {
                        OPEN_STEPS.delete(tx, &open.order_id);
                        continue;
                    };
                    if let Some(actions) = order.saga.on_tick(*now_ms) {
                        save(tx, &order, &actions, meta)?;
                    }
                }
                Ok(Ok(None))
            }
            Command::Cancel { order_id } => {
                let Some(mut order) = ORDERS.get(tx, order_id)? else {
                    return Ok(Err(Rejection::not_found("order")));
                };
                let actions = match order.saga.cancel(meta.at_ms) {
                    Ok(actions) => actions,
                    Err(error) => {
                        return Ok(Err(Rejection::conflict(
                            "invalid_state",
                            None,
                            format!("{error}: it has been dispatched or is already final"),
                        )));
                    }
                };
                save(tx, &order, &actions, meta)?;
                Ok(Ok(Some(order)))
            }
        }
    }
}

fn place(
    tx: &mut dyn Transaction,
    new: &NewOrder,
    meta: &CommandMeta,
) -> Result<Result<Option<Order>, Rejection>, StoreError> {
    // A key seen before answers the order it placed (a retry after a crash, or a retry
    // racing its first attempt): never a second order, never a second charge.
    if let Some(placement) = &new.placement {
        let index = placement_key(&new.customer_id, &placement.key);
        if let Some(placed) = PLACEMENTS.get(tx, &index)? {
            return Ok(match same_request(&placed, placement) {
                Ok(order_id) => Ok(ORDERS.get(tx, &order_id)?),
                Err(rejection) => Err(rejection),
            });
        }
    }
    if ORDERS.get(tx, &new.id)?.is_some() {
        return Ok(Err(Rejection::conflict(
            "order_exists",
            None,
            "an order with this id exists",
        )));
    }
    if let Some(placement) = &new.placement {
        let placed = Placed {
            order_id: new.id.clone(),
            request_fingerprint: placement.request_fingerprint.clone(),
        };
        PLACEMENTS.put(
            tx,
            &placement_key(&new.customer_id, &placement.key),
            &placed,
        )?;
    }
    let (saga, actions) = Saga::start(meta.at_ms, new.step_timeout_ms, new.payment.clone());
    let order = Order {
        id: new.id.clone(),
        customer_id: new.customer_id.clone(),
        lines: new.lines.clone(),
        total: new.total.clone(),
        shipping_address: new.shipping_address.clone(),
        shipping_method: new.shipping_method,
        created_at_ms: meta.at_ms,
        correlation_id: meta.correlation_id.clone(),
        saga,
    };
    BY_CUSTOMER.put(
        tx,
        &customer_key(&order.customer_id, order.created_at_ms, &order.id),
        &order.id,
    )?;
    let created = ev::OrderCreated {
        order_id: &order.id,
        customer_id: &order.customer_id,
        lines: &order.lines,
        total: &order.total,
        shipping_address: &order.shipping_address,
    };
    emit(
        tx,
        meta,
        &order,
        ev::ORDER_EVENTS,
        ev::ORDER_CREATED,
        created,
    )?;
    save(tx, &order, &actions, meta)?;
    Ok(Ok(Some(order)))
}

/// Writes the order, keeps the clock's index of open steps, and sends what `actions` ask.
fn save(
    tx: &mut dyn Transaction,
    order: &Order,
    actions: &[Action],
    meta: &CommandMeta,
) -> Result<(), StoreError> {
    ORDERS.put(tx, &order.id, order)?;
    match order.saga.deadline_ms {
        Some(deadline_ms) => OPEN_STEPS.put(
            tx,
            &order.id,
            &OpenStep {
                order_id: order.id.clone(),
                deadline_ms,
            },
        )?,
        None => OPEN_STEPS.delete(tx, &order.id),
    }
    for action in actions {
        perform(tx, order, action, meta)?;
    }
    Ok(())
}

fn perform(
    tx: &mut dyn Transaction,
    order: &Order,
    action: &Action,
    meta: &CommandMeta,
) -> Result<(), StoreError> {
    let id = order.id.as_str();
    let for_order = ev::ForOrder { order_id: id };
    match action {
        Action::ReserveInventory => {
            let expires_at_ms = order
                .created_at_ms
                .saturating_add(order.saga.step_timeout_ms.saturating_mul(RESERVATION_STEPS));
            let data = ev::ReserveInventory {
                order_id: id,
                items: order
                    .lines
                    .iter()
                    .map(|line| ev::Item {
                        product_id: &line.product_id,
                        quantity: line.quantity,
                    })
                    .collect(),
                expires_at: rfc3339(expires_at_ms),
            };
            let topic = ev::INVENTORY_COMMANDS;
            emit(tx, meta, order, topic, ev::RESERVE_INVENTORY, data)
        }
        Action::ProcessPayment { payment } => {
            let data = ev::ProcessPayment {
                order_id: id,
                customer_id: &order.customer_id,
                amount: &order.total,
                payment_token: &payment.token,
                card_last4: &payment.card_last4,
                idempotency_key: format!("order:{id}"),
            };
            let topic = ev::PAYMENT_COMMANDS;
            emit(tx, meta, order, topic, ev::PROCESS_PAYMENT, data)
        }
        Action::CreateShipment => {
            let data = ev::CreateShipment {
                order_id: id,
                customer_id: &order.customer_id,
                address: &order.shipping_address,
                items: order
                    .lines
                    .iter()
                    .map(|line| ev::ShipmentItem {
                        product_id: &line.product_id,
                        quantity: line.quantity,
                        weight_grams: line.weight_grams,
                    })
                    .collect(),
                method: order.shipping_method,
            };
            let topic = ev::SHIPPING_COMMANDS;
            emit(tx, meta, order, topic, ev::CREATE_SHIPMENT, data)
        }
        Action::ConfirmReservation => {
            let topic = ev::INVENTORY_COMMANDS;
            emit(tx, meta, order, topic, ev::CONFIRM_RESERVATION, for_order)
        }
        Action::CommitInventory => {
            let topic = ev::INVENTORY_COMMANDS;
            emit(tx, meta, order, topic, ev::COMMIT_INVENTORY, for_order)
        }
        Action::ReleaseInventory { reason } => {
            let data = ev::WithReason {
                order_id: id,
                reason,
            };
            let topic = ev::INVENTORY_COMMANDS;
            emit(tx, meta, order, topic, ev::RELEASE_INVENTORY, data)
        }
        Action::RefundPayment { reason } => {
            let data = ev::RefundPayment {
                order_id: id,
                reason,
                idempotency_key: format!("refund:{id}"),
            };
            let topic = ev::PAYMENT_COMMANDS;
            emit(tx, meta, order, topic, ev::REFUND_PAYMENT, data)
        }
        Action::CancelShipment { reason } => {
            let data = ev::WithReason {
                order_id: id,
                reason,
            };
            let topic = ev::SHIPPING_COMMANDS;
            emit(tx, meta, order, topic, ev::CANCEL_SHIPMENT, data)
        }
        Action::OrderConfirmed => {
            let data = ev::OrderConfirmed {
                order_id: id,
                customer_id: &order.customer_id,
                lines: &order.lines,
                total: &order.total,
                tracking_number: order.saga.tracking_number.as_deref(),
            };
            emit(tx, meta, order, ev::ORDER_EVENTS, ev::ORDER_CONFIRMED, data)
        }
        Action::OrderCancelled { reason } => {
            let data = ev::OrderCancelled {
                order_id: id,
                customer_id: &order.customer_id,
                lines: &order.lines,
                total: &order.total,
                reason,
            };
            emit(tx, meta, order, ev::ORDER_EVENTS, ev::ORDER_CANCELLED, data)
        }
        Action::OrderCompleted => {
            let data = ev::OrderCompleted {
                order_id: id,
                customer_id: &order.customer_id,
            };
            emit(tx, meta, order, ev::ORDER_EVENTS, ev::ORDER_COMPLETED, data)
        }
    }
}

/// One event or command about `order`, carrying the order's own correlation id.
fn emit(
    tx: &mut dyn Transaction,
    meta: &CommandMeta,
    order: &Order,
    topic: &str,
    event_type: &str,
    data: impl Serialize,
) -> Result<(), StoreError> {
    let mut event = meta.event(event_type, &order.id, 1, data)?;
    event.correlation_id = order.correlation_id.clone();
    tx.emit(topic, event);
    Ok(())
}
