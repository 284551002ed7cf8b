//! Inventory records and the pure stock arithmetic: reserve (all or nothing, warehouses in
//! name order), release and commit. `apply` loads records, calls these, writes them back.

use crate::platform::Rejection;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

pub const DEFAULT_WAREHOUSE: &str = "main";
pub const DEFAULT_LOW_STOCK_THRESHOLD: u64 = 5;

/// Units of one product in one warehouse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Units {
    /// Can be sold now.
    pub available: u64,
    /// Held by orders' reservations.
    pub reserved: u64,
}

/// The stock of one product, per warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    pub product_id: String,
    /// By warehouse name; a BTreeMap so allocation walks warehouses in name order.
    pub warehouses: BTreeMap<String, Units>,
    pub low_stock_threshold: u64,
    /// A LowStockAlert was sent and available has not been back at the threshold since:
    /// one alert per crossing.
    pub low_stock_alerted: bool,
    pub updated_at_ms: i64,
}

impl Stock {
    pub fn new(product_id: &str) -> Stock {
        Stock {
            product_id: product_id.to_string(),
            warehouses: BTreeMap::new(),
            low_stock_threshold: DEFAULT_LOW_STOCK_THRESHOLD,
            low_stock_alerted: false,
            updated_at_ms: 0,
        }
    }

    pub fn totals(&self) -> Units {
        self.warehouses
            .values()
            .fold(Units::default(), |total, units| Units {
                available: total.available.saturating_add(units.available),
                reserved: total.reserved.saturating_add(units.reserved),
            })
    }

    pub fn is_low(&self) -> bool {
        self.totals().available < self.low_stock_threshold
    }
}

/// An order's line as inventory sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Item {
    pub product_id: String,
    pub quantity: u64,
}

/// Units of a reservation taken from one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Allocation {
    pub product_id: String,
    pub warehouse: String,
    pub quantity: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Units held; released at `expires_at` unless confirmed or committed first.
    Held,
    /// The order is confirmed: held without expiry until committed or released.
    Confirmed,
    /// Shipped: the units left stock.
    Committed,
    Released,
    /// Refused (not enough stock, unknown product); nothing held.
    Failed,
}

/// One order's reservation (keyed by order id), kept after it ends so a repeated command is
/// answered from what was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reservation {
    pub order_id: String,
    pub status: ReservationStatus,
    pub items: Vec<Item>,
    pub allocations: Vec<Allocation>,
    /// RFC 3339, as the command gave it.
    pub expires_at: String,
    pub expires_at_ms: i64,
    /// Why it failed or was released.
    pub reason: Option<String>,
    /// The product a failed reservation could not get.
    pub failed_product_id: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Reservation {
    /// Whether units are still held (so release and commit apply).
    pub fn holds_units(&self) -> bool {
        matches!(
            self.status,
            ReservationStatus::Held | ReservationStatus::Confirmed
        )
    }
}

/// Why a reservation cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub product_id: String,
    /// `insufficient_stock` or `unknown_product` (the contract's reasons).
    pub reason: &'static str,
}

/// Items with the same product merged (first appearance order kept): an order listing a
/// product twice needs both quantities at once.
pub fn merge_items(items: &[Item]) -> Vec<Item> {
    let mut merged: Vec<Item> = Vec::with_capacity(items.len());
    for item in items {
        match merged
            .iter_mut()
            .find(|seen| seen.product_id == item.product_id)
        {
            Some(seen) => seen.quantity = seen.quantity.saturating_add(item.quantity),
            None => merged.push(item.clone()),
        }
    }
    merged
}

/// Reserves every item or none: checks all first, then moves units from `available` to
/// `reserved`, taking from warehouses in name order. `stocks` holds the stock records of the
/// items' products (absent = unknown product). On a shortage nothing is changed.
pub fn reserve(
    stocks: &mut BTreeMap<String, Stock>,
    items: &[Item],
) -> Result<Vec<Allocation>, Shortage> {
    let items = merge_items(items);
    for item in &items {
        let Some(stock) = stocks.get(&item.product_id) else {
            return Err(Shortage {
                product_id: item.product_id.clone(),
                reason: "unknown_product",
            });
        };
        if stock.totals().available < item.quantity {
            return Err(Shortage {
                product_id: item.product_id.clone(),
                reason: "insufficient_stock",
            });
        }
    }
    let mut allocations = Vec::new();
    for item in &items {
        let Some(stock) = stocks.get_mut(&item.product_id) else {
            continue; // checked above
        };
        let mut wanted = item.quantity;
        for (warehouse, units) in &mut stock.warehouses {
            if wanted == 0 {
                break;
            }
            let taken = wanted.min(units.available);
            if taken == 0 {
                continue;
            }
            units.available -= taken;
            units.reserved = units.reserved.saturating_add(taken);
            wanted -= taken;
            allocations.push(Allocation {
                product_id: item.product_id.clone(),
                warehouse: warehouse.clone(),
                quantity: taken,
            });
        }
    }
    Ok(allocations)
}

/// Gives reserved units back to `available` where they were taken from.
pub fn release(stocks: &mut BTreeMap<String, Stock>, allocations: &[Allocation]) {
    for allocation in allocations {
        let units = warehouse_units(stocks, allocation);
        let back = allocation.quantity.min(units.reserved);
        units.reserved -= back;
        units.available = units.available.saturating_add(back);
    }
}

/// Reserved units leave stock (shipped).
pub fn commit(stocks: &mut BTreeMap<String, Stock>, allocations: &[Allocation]) {
    for allocation in allocations {
        let units = warehouse_units(stocks, allocation);
        units.reserved = units.reserved.saturating_sub(allocation.quantity);
    }
}

fn warehouse_units<'a>(
    stocks: &'a mut BTreeMap<String, Stock>,
    allocation: &Allocation,
) -> &'a mut Units {
    // A stock record is never deleted while a reservation holds units of it; recreating an
    // empty one keeps the arithmetic total (and never below zero) if that ever changes.
    stocks
        .entry(allocation.product_id.clone())
        .or_insert_with(|| Stock::new(&allocation.product_id))
        .warehouses
        .entry(allocation.warehouse.clone())
        .or_default()
}

/// Product ids are other services' ids: 1 to 128 bytes, no control characters or `/`.
pub fn check_product_id(id: &str) -> Result<String, Rejection> {
    check_id("product_id", id)
}

pub fn check_order_id(id: &str) -> Result<String, Rejection> {
    check_id("order_id", id)
}

pub fn check_id(field: &str, id: &str) -> Result<String, Rejection> {
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c == '/') {
        return Err(Rejection::invalid(
            field,
            format!("{field} has 1 to 128 bytes, no '/' or control characters"),
        ));
    }
    Ok(id.to_string())
}

/// Warehouse names: 1 to 64 letters, digits, `-` or `_`.
pub fn check_warehouse(name: Option<&str>) -> Result<String, Rejection> {
    let name = name.map(str::trim).unwrap_or(DEFAULT_WAREHOUSE);
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(Rejection::invalid(
            "warehouse",
            "a warehouse name has 1 to 64 letters, digits, '-' or '_'",
        ));
    }
    Ok(name.to_string())
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
