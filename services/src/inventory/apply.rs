//! The inventory state machine.

use super::commands::Command;
use super::events::{self, TOPIC};
use super::model::{self, Item, Reservation, ReservationStatus, Stock, Units, merge_items};
use crate::platform::store::{Table, Transaction};
use crate::platform::{CommandMeta, Rejection, StateMachine, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const STOCK: Table<Stock> = Table::new("stock");
pub const RESERVATIONS: Table<Reservation> = Table::new("reservation");
/// Reservations that expire, keyed `<expires_at_ms, 20 digits>/<order_id>` so a scan meets
/// them in expiry order and stops at the first one still valid.
pub const HOLDS: Table<Hold> = Table::new("hold");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hold {
    pub order_id: String,
    pub expires_at_ms: i64,
}

pub fn hold_key(expires_at_ms: i64, order_id: &str) -> String {
    format!("{:020}/{order_id}", expires_at_ms.max(0))
}

pub struct Inventory;

impl StateMachine for Inventory {
    type Command = Command;
    /// The product's stock after an admin command; None for the saga's commands.
    type Output = Option<Stock>;

    fn apply(
        &self,
        tx: &mut dyn Transaction,
        command: &Command,
        meta: &CommandMeta,
    ) -> Result<Result<Option<Stock>, Rejection>, StoreError> {
        match command {
            Command::SetStock {
                product_id,
                warehouse,
                available,
                low_stock_threshold,
            } => {
                let existing = STOCK.get(tx, product_id)?;
                let is_new = existing.is_none();
                let mut stocks = BTreeMap::new();
                let mut stock = existing.unwrap_or_else(|| Stock::new(product_id));
                let before = totals_of([&stock]);
                stock
                    .warehouses
                    .entry(warehouse.clone())
                    .or_default()
                    .available = *available;
                if let Some(threshold) = low_stock_threshold {
                    stock.low_stock_threshold = *threshold;
                }
                stocks.insert(product_id.clone(), stock);
                save_stocks(tx, meta, stocks, &before, is_new).map(Ok)
            }
            Command::AdjustStock {
                product_id,
                warehouse,
                delta,
                reason: _,
            } => {
                let Some(mut stock) = STOCK.get(tx, product_id)? else {
                    return Ok(Err(Rejection::not_found("product stock")));
                };
                let before = totals_of([&stock]);
                let units = stock.warehouses.entry(warehouse.clone()).or_default();
                let adjusted = i128::from(units.available) + i128::from(*delta);
                let Ok(adjusted) = u64::try_from(adjusted) else {
                    return Ok(Err(Rejection::conflict(
                        "insufficient_stock",
                        Some("delta"),
                        format!(
                            "{warehouse} has {} available; available cannot go below zero",
                            units.available
                        ),
                    )));
                };
                units.available = adjusted;
                let stocks = BTreeMap::from([(product_id.clone(), stock)]);
                save_stocks(tx, meta, stocks, &before, false).map(Ok)
            }
            Command::Reserve {
                order_id,
                items,
                expires_at,
                expires_at_ms,
            } => {
                reserve(tx, meta, order_id, items, expires_at, *expires_at_ms)?;
                Ok(Ok(None))
            }
            Command::Confirm { order_id } => {
                if let Some(mut reservation) = RESERVATIONS.get(tx, order_id)?
                    && reservation.status == ReservationStatus::Held
                {
                    HOLDS.delete(tx, &hold_key(reservation.expires_at_ms, order_id));
                    reservation.status = ReservationStatus::Confirmed;
                    reservation.updated_at_ms = meta.at_ms;
                    RESERVATIONS.put(tx, order_id, &reservation)?;
                } else {
                    tracing::info!(%order_id, "ConfirmReservation for no held reservation: nothing to do");
                }
                Ok(Ok(None))
            }
            Command::Release { order_id, reason } => {
                let mut touched = Touched::default();
                release(tx, meta, order_id, reason, &mut touched)?;
                touched.save(tx, meta)?;
                Ok(Ok(None))
            }
            Command::Commit { order_id } => {
                commit(tx, meta, order_id)?;
                Ok(Ok(None))
            }
            Command::ExpireReservations { now_ms } => {
                // One StockLevelChanged per product for the whole sweep: event ids derive
                // from (command, type, aggregate), so two for one product would collide.
                let mut touched = Touched::default();
                for hold in HOLDS.scan(tx)? {
                    if hold.expires_at_ms > *now_ms {
                        break;
                    }
                    release(tx, meta, &hold.order_id, "expired", &mut touched)?;
                }
                touched.save(tx, meta)?;
                Ok(Ok(None))
            }
        }
    }
}

/// Reserves an order's items, or records why not; a repeated command answers as the first
/// did (the same reply again) and reserves nothing more.
fn reserve(
    tx: &mut dyn Transaction,
    meta: &CommandMeta,
    order_id: &str,
    items: &[Item],
    expires_at: &str,
    expires_at_ms: i64,
) -> Result<(), StoreError> {
    if let Some(existing) = RESERVATIONS.get(tx, order_id)? {
        answer_again(tx, meta, &existing)?;
        return Ok(());
    }
    let items = merge_items(items);
    let mut stocks = BTreeMap::new();
    for item in &items {
        if let Some(stock) = STOCK.get(tx, &item.product_id)? {
            stocks.insert(item.product_id.clone(), stock);
        }
    }
    let before = totals_of(stocks.values());
    let mut reservation = Reservation {
        order_id: order_id.to_string(),
        status: ReservationStatus::Held,
        items: items.clone(),
        allocations: Vec::new(),
        expires_at: expires_at.to_string(),
        expires_at_ms,
        reason: None,
        failed_product_id: None,
        created_at_ms: meta.at_ms,
        updated_at_ms: meta.at_ms,
    };
    match model::reserve(&mut stocks, &items) {
        Ok(allocations) => {
            reservation.allocations = allocations;
            RESERVATIONS.put(tx, order_id, &reservation)?;
            let hold = Hold {
                order_id: order_id.to_string(),
                expires_at_ms,
            };
            HOLDS.put(tx, &hold_key(expires_at_ms, order_id), &hold)?;
            answer_again(tx, meta, &reservation)?;
            save_stocks(tx, meta, stocks, &before, false)?;
        }
        Err(shortage) => {
            reservation.status = ReservationStatus::Failed;
            reservation.reason = Some(shortage.reason.to_string());
            reservation.failed_product_id = Some(shortage.product_id);
            RESERVATIONS.put(tx, order_id, &reservation)?;
            answer_again(tx, meta, &reservation)?;
        }
    }
    Ok(())
}

/// The saga's reply to ReserveInventory, as the reservation now stands: reserved while it
/// holds units, failed when it was refused; nothing once it has ended (released or shipped).
fn answer_again(
    tx: &mut dyn Transaction,
    meta: &CommandMeta,
    reservation: &Reservation,
) -> Result<(), StoreError> {
    let order_id = reservation.order_id.as_str();
    match reservation.status {
        ReservationStatus::Held | ReservationStatus::Confirmed => {
            let data = events::InventoryReserved {
                order_id,
                items: &reservation.items,
                expires_at: &reservation.expires_at,
            };
            tx.emit(
                TOPIC,
                meta.event(events::INVENTORY_RESERVED, order_id, 1, data)?,
            );
        }
        ReservationStatus::Failed => {
            let data = events::ReservationFailed {
                order_id,
                reason: reservation
                    .reason
                    .as_deref()
                    .unwrap_or("insufficient_stock"),
                product_id: reservation.failed_product_id.as_deref().unwrap_or(""),
            };
            tx.emit(
                TOPIC,
                meta.event(events::RESERVATION_FAILED, order_id, 1, data)?,
            );
        }
        ReservationStatus::Released | ReservationStatus::Committed => {
            tracing::info!(%order_id, status = ?reservation.status, "ReserveInventory for an ended reservation: nothing to answer");
        }
    }
    Ok(())
}

/// Stocks a command changed, with their totals before it, saved once at its end.
#[derive(Default)]
struct Touched {
    stocks: BTreeMap<String, Stock>,
    before: BTreeMap<String, Units>,
}

impl Touched {
    fn load(&mut self, tx: &dyn Transaction, reservation: &Reservation) -> Result<(), StoreError> {
        for allocation in &reservation.allocations {
            if !self.stocks.contains_key(&allocation.product_id)
                && let Some(stock) = STOCK.get(tx, &allocation.product_id)?
            {
                self.before
                    .insert(allocation.product_id.clone(), stock.totals());
                self.stocks.insert(allocation.product_id.clone(), stock);
            }
        }
        Ok(())
    }

    fn save(self, tx: &mut dyn Transaction, meta: &CommandMeta) -> Result<(), StoreError> {
        save_stocks(tx, meta, self.stocks, &self.before, false)?;
        Ok(())
    }
}

fn release(
    tx: &mut dyn Transaction,
    meta: &CommandMeta,
    order_id: &str,
    reason: &str,
    touched: &mut Touched,
) -> Result<(), StoreError> {
    let Some(mut reservation) = RESERVATIONS.get(tx, order_id)? else {
        tracing::info!(%order_id, "ReleaseInventory for an order with no reservation: nothing to release");
        return Ok(());
    };
    if !reservation.holds_units() {
        tracing::info!(%order_id, status = ?reservation.status, "ReleaseInventory for a reservation holding nothing");
        return Ok(());
    }
    touched.load(tx, &reservation)?;
    model::release(&mut touched.stocks, &reservation.allocations);
    end_reservation(tx, meta, &mut reservation, ReservationStatus::Released)?;
    reservation.reason = Some(reason.to_string());
    RESERVATIONS.put(tx, order_id, &reservation)?;
    let data = events::InventoryReleased {
        order_id,
        reason,
        items: &reservation.items,
    };
    tx.emit(
        TOPIC,
        meta.event(events::INVENTORY_RELEASED, order_id, 1, data)?,
    );
    Ok(())
}

fn commit(tx: &mut dyn Transaction, meta: &CommandMeta, order_id: &str) -> Result<(), StoreError> {
    let Some(mut reservation) = RESERVATIONS.get(tx, order_id)? else {
        tracing::warn!(%order_id, "CommitInventory for an order with no reservation");
        return Ok(());
    };
    if !reservation.holds_units() {
        tracing::info!(%order_id, status = ?reservation.status, "CommitInventory for a reservation holding nothing");
        return Ok(());
    }
    let mut touched = Touched::default();
    touched.load(tx, &reservation)?;
    model::commit(&mut touched.stocks, &reservation.allocations);
    end_reservation(tx, meta, &mut reservation, ReservationStatus::Committed)?;
    RESERVATIONS.put(tx, order_id, &reservation)?;
    let data = events::InventoryCommitted {
        order_id,
        items: &reservation.items,
    };
    tx.emit(
        TOPIC,
        meta.event(events::INVENTORY_COMMITTED, order_id, 1, data)?,
    );
    touched.save(tx, meta)?;
    Ok(())
}

fn end_reservation(
    tx: &mut dyn Transaction,
    meta: &CommandMeta,
    reservation: &mut Reservation,
    status: ReservationStatus,
) -> Result<(), StoreError> {
    if reservation.status == ReservationStatus::Held {
        HOLDS.delete(
            tx,
            &hold_key(reservation.expires_at_ms, &reservation.order_id),
        );
    }
    reservation.status = status;
    reservation.updated_at_ms = meta.at_ms;
    Ok(())
}

fn totals_of<'a>(stocks: impl IntoIterator<Item = &'a Stock>) -> BTreeMap<String, Units> {
    stocks
        .into_iter()
        .map(|stock| (stock.product_id.clone(), stock.totals()))
        .collect()
}

/// Writes the stocks back; for each whose totals moved (or that is new) emits
/// StockLevelChanged, and a LowStockAlert when available is now below the threshold and no
/// alert was sent since it last was not. Answers the last stock (the admin commands' one).
fn save_stocks(
    tx: &mut dyn Transaction,
    meta: &CommandMeta,
    stocks: BTreeMap<String, Stock>,
    before: &BTreeMap<String, Units>,
    is_new: bool,
) -> Result<Option<Stock>, StoreError> {
    let mut last = None;
    for (product_id, mut stock) in stocks {
        let totals = stock.totals();
        stock.updated_at_ms = meta.at_ms;
        if is_new || before.get(&product_id) != Some(&totals) {
            let data = events::StockLevelChanged {
                product_id: &product_id,
                available: totals.available,
                reserved: totals.reserved,
            };
            tx.emit(
                TOPIC,
                meta.event(events::STOCK_LEVEL_CHANGED, &product_id, 1, data)?,
            );
        }
        if stock.is_low() {
            if !stock.low_stock_alerted {
                stock.low_stock_alerted = true;
                let data = events::LowStockAlert {
                    product_id: &product_id,
                    available: totals.available,
                    threshold: stock.low_stock_threshold,
                };
                tx.emit(
                    TOPIC,
                    meta.event(events::LOW_STOCK_ALERT, &product_id, 1, data)?,
                );
            }
        } else {
            stock.low_stock_alerted = false;
        }
        STOCK.put(tx, &product_id, &stock)?;
        last = Some(stock);
    }
    Ok(last)
}
