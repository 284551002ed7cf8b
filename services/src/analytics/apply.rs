//! The analytics state machine: folds facts into totals, per-order flags, product sales and
//! minute buckets. Emits nothing.

use super::commands::{Command, Counted, SoldLine};
use super::model::{MinuteBucket, OrderSeen, ProductSales, Totals};
use crate::platform::store::{Table, Transaction};
use crate::platform::{CommandMeta, Rejection, StateMachine, StoreError};

pub const TOTALS: Table<Totals> = Table::new("totals");
pub const TOTALS_ID: &str = "all";
pub const ORDERS: Table<OrderSeen> = Table::new("order");
pub const PRODUCTS: Table<ProductSales> = Table::new("product");
/// Keyed by the minute's start in epoch ms, 20 digits, so keys sort by time.
pub const MINUTES: Table<MinuteBucket> = Table::new("minute");
/// Things counted once, keyed `<kind>/<id>`.
pub const COUNTED: Table<bool> = Table::new("counted");

pub fn minute_key(minute_ms: i64) -> String {
    format!("{:020}", minute_ms.max(0))
}

pub struct Analytics;

impl StateMachine for Analytics {
    type Command = Command;
    type Output = ();

    fn apply(
        &self,
        tx: &mut dyn Transaction,
        command: &Command,
        _meta: &CommandMeta,
    ) -> Result<Result<(), Rejection>, StoreError> {
        let mut totals = TOTALS.get(tx, TOTALS_ID)?.unwrap_or_default();
        match command {
            Command::OrderCreated {
                order_id,
                minute_ms,
            } => {
                if first_time(tx, order_id, |seen| &mut seen.created)? {
                    totals.orders_created += 1;
                    bump(tx, *minute_ms, |bucket| bucket.orders_created += 1)?;
                }
            }
            Command::OrderConfirmed {
                order_id,
                minute_ms,
                total,
                lines,
            } => {
                if first_time(tx, order_id, |seen| &mut seen.confirmed)? {
                    // Refunds of this order read before its confirmation count now.
                    let refunded = ORDERS.get(tx, order_id)?.unwrap_or_default().refunded;
                    totals.orders_confirmed += 1;
                    totals.confirmed_amount = totals.confirmed_amount.saturating_add(*total);
                    totals.refunded_confirmed_amount =
                        totals.refunded_confirmed_amount.saturating_add(refunded);
                    bump(tx, *minute_ms, |bucket| {
                        bucket.orders_confirmed += 1;
                        bucket.revenue = bucket
                            .revenue
                            .saturating_add(*total)
                            .saturating_sub(refunded);
                    })?;
                    for line in lines {
                        add_sale(tx, line)?;
                    }
                }
            }
            Command::OrderCancelled {
                order_id,
                minute_ms,
            } => {
                if first_time(tx, order_id, |seen| &mut seen.cancelled)? {
                    totals.orders_cancelled += 1;
                    bump(tx, *minute_ms, |bucket| bucket.orders_cancelled += 1)?;
                }
            }
            Command::OrderCompleted { order_id } => {
                if first_time(tx, order_id, |seen| &mut seen.completed)? {
                    totals.orders_completed += 1;
                }
            }
            Command::RefundProcessed {
                payment_id,
                order_id,
                minute_ms,
                amount,
            } => {
                if count_once(tx, "refund", payment_id)? {
                    totals.refunded_amount = totals.refunded_amount.saturating_add(*amount);
                    if of_confirmed_order(tx, order_id, *amount)? {
                        totals.refunded_confirmed_amount =
                            totals.refunded_confirmed_amount.saturating_add(*amount);
                        bump(tx, *minute_ms, |bucket| {
                            bucket.revenue = bucket.revenue.saturating_sub(*amount);
                        })?;
                    }
                }
            }
            Command::Count { kind, id } => {
                if count_once(tx, kind.as_str(), id)? {
                    let counter = match kind {
                        Counted::UserRegistered => &mut totals.registered_users,
                        Counted::ProductCreated => &mut totals.products_created,
                        Counted::PaymentProcessed => &mut totals.payments_processed,
                        Counted::PaymentFailed => &mut totals.payments_failed,
                        Counted::ShipmentCreated => &mut totals.shipments_created,
                        Counted::ShipmentDelivered => &mut totals.shipments_delivered,
                        Counted::LowStockAlert => &mut totals.low_stock_alerts,
                    };
                    *counter += 1;
                }
            }
        }
        TOTALS.put(tx, TOTALS_ID, &totals)?;
        Ok(Ok(()))
    }
}

/// Marks one transition of an order seen; true the first time.
fn first_time(
    tx: &mut dyn Transaction,
    order_id: &str,
    flag: impl FnOnce(&mut OrderSeen) -> &mut bool,
) -> Result<bool, StoreError> {
    let mut seen = ORDERS.get(tx, order_id)?.unwrap_or_default();
    let flag = flag(&mut seen);
    if *flag {
        return Ok(false);
    }
    *flag = true;
    ORDERS.put(tx, order_id, &seen)?;
    Ok(true)
}

/// Records a refund of `amount` against its order; whether the order was confirmed (so the
/// refund takes back revenue now; otherwise its confirmation, if it comes, nets it out).
fn of_confirmed_order(
    tx: &mut dyn Transaction,
    order_id: &str,
    amount: i64,
) -> Result<bool, StoreError> {
    if order_id.is_empty() {
        return Ok(true);
    }
    let mut seen = ORDERS.get(tx, order_id)?.unwrap_or_default();
    seen.refunded = seen.refunded.saturating_add(amount);
    ORDERS.put(tx, order_id, &seen)?;
    Ok(seen.confirmed)
}

/// Records `<kind>/<id>` as counted; true the first time.
fn count_once(tx: &mut dyn Transaction, kind: &str, id: &str) -> Result<bool, StoreError> {
    let key = format!("{kind}/{id}");
    if COUNTED.get(tx, &key)?.is_some() {
        return Ok(false);
    }
    COUNTED.put(tx, &key, &true)?;
    Ok(true)
}

fn bump(
    tx: &mut dyn Transaction,
    minute_ms: i64,
    change: impl FnOnce(&mut MinuteBucket),
) -> Result<(), StoreError> {
    let key = minute_key(minute_ms);
    let mut bucket = MINUTES.get(tx, &key)?.unwrap_or_else(|| MinuteBucket {
        minute_ms,
        ..MinuteBucket::default()
    });
    change(&mut bucket);
    MINUTES.put(tx, &key, &bucket)
}

fn add_sale(tx: &mut dyn Transaction, line: &SoldLine) -> Result<(), StoreError> {
    let mut sales = PRODUCTS
        .get(tx, &line.product_id)?
        .unwrap_or_else(|| ProductSales {
            product_id: line.product_id.clone(),
            sku: line.sku.clone(),
            name: line.name.clone(),
            quantity: 0,
            revenue: 0,
        });
    // The latest name and SKU win: a renamed product shows as it is now called.
    sales.sku = line.sku.clone();
    sales.name = line.name.clone();
    sales.quantity = sales.quantity.saturating_add(line.quantity);
    sales.revenue = sales.revenue.saturating_add(line.revenue);
    PRODUCTS.put(tx, &line.product_id, &sales)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::platform::engine::CommandContext;
    use crate::platform::{Engine, Store};
    use std::sync::Arc;

    fn engine(dir: &std::path::Path) -> Arc<Engine<Analytics>> {
        let store = Arc::new(Store::open(&dir.join("analytics")).unwrap());
        crate::platform::testing::leaked(dir, store, Analytics)
    }

    fn apply(engine: &Engine<Analytics>, command: Command) {
        engine
            .submit_blocking(command, CommandContext::default())
            .unwrap()
            .unwrap();
    }

    fn confirmed(order_id: &str, total: i64) -> Command {
        Command::OrderConfirmed {
            order_id: order_id.to_string(),
            minute_ms: 0,
            total,
            lines: Vec::new(),
        }
    }

    fn refund(payment_id: &str, order_id: &str, amount: i64) -> Command {
        Command::RefundProcessed {
            payment_id: payment_id.to_string(),
            order_id: order_id.to_string(),
            minute_ms: 0,
            amount,
        }
    }

    /// Revenue is what confirmed orders brought in: the refund of an order the saga
    /// cancelled before confirming it is a refund, not lost revenue, in either order the
    /// two topics are read; a refund of a confirmed order takes revenue back, also when it
    /// is read before the confirmation, and once per payment.
    #[test]
    fn revenue_counts_refunds_of_confirmed_orders_only() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        apply(&engine, confirmed("o1", 1000));
        apply(&engine, refund("p1", "o1", 300));
        apply(&engine, refund("p1", "o1", 300));
        apply(&engine, refund("p2", "o2", 500));
        apply(&engine, confirmed("o2", 500));
        apply(&engine, refund("p3", "o3", 700));
        apply(
            &engine,
            Command::OrderCancelled {
                order_id: "o3".to_string(),
                minute_ms: 0,
            },
        );
        let totals = TOTALS
            .get(engine.store().as_ref(), TOTALS_ID)
            .unwrap()
            .unwrap();
        assert_eq!(totals.confirmed_amount, 1500);
        assert_eq!(totals.refunded_amount, 1500);
        assert_eq!(totals.refunded_confirmed_amount, 800);
        let minute = MINUTES
            .get(engine.store().as_ref(), &minute_key(0))
            .unwrap()
            .unwrap();
        assert_eq!(minute.revenue, 700);
    }
}
