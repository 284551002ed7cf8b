//! Analytics records: running totals, what is known per order, sales per product and
//! per-minute buckets.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const MINUTE_MS: i64 = 60_000;

/// Every running total (one record).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub orders_created: u64,
    pub orders_confirmed: u64,
    pub orders_cancelled: u64,
    pub orders_completed: u64,
    /// Sum of confirmed order totals, minor units.
    pub confirmed_amount: i64,
    /// Sum of refunds, minor units.
    pub refunded_amount: i64,
    /// The part of `refunded_amount` that returned money of confirmed orders: revenue is
    /// `confirmed_amount` minus this. A refund of an order the saga cancelled before it
    /// was confirmed returns money revenue never counted.
    #[serde(default)]
    pub refunded_confirmed_amount: i64,
    pub registered_users: u64,
    pub products_created: u64,
    pub payments_processed: u64,
    pub payments_failed: u64,
    pub shipments_created: u64,
    pub shipments_delivered: u64,
    pub low_stock_alerts: u64,
}

/// The transitions of one order already counted, so each is counted once per order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSeen {
    pub created: bool,
    pub confirmed: bool,
    pub cancelled: bool,
    pub completed: bool,
    /// Refunded for this order so far, minor units: a refund may be read before the
    /// order's confirmation (they arrive on different topics).
    #[serde(default)]
    pub refunded: i64,
}

/// Sales of one product, from confirmed orders' lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductSales {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub quantity: u64,
    /// Minor units (USD).
    pub revenue: i64,
}

/// One minute of activity, by the events' `occurred_at`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteBucket {
    pub minute_ms: i64,
    pub orders_created: u64,
    pub orders_confirmed: u64,
    pub orders_cancelled: u64,
    /// Confirmed totals minus refunds in this minute, minor units.
    pub revenue: i64,
}

/// The start of the minute `at_ms` falls in.
pub fn minute_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// Best sellers first: by quantity, then revenue, then product id (a stable order).
pub fn rank(products: &mut [ProductSales]) {
    products.sort_by(|a, b| {
        b.quantity
            .cmp(&a.quantity)
            .then(b.revenue.cmp(&a.revenue))
            .then_with(|| a.product_id.cmp(&b.product_id))
    });
}

/// Confirmed orders per created order; 0 before any order.
pub fn conversion_rate(totals: &Totals) -> f64 {
    if totals.orders_created == 0 {
        return 0.0;
    }
    totals.orders_confirmed as f64 / totals.orders_created as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_and_ranking() {
        assert_eq!(minute_of(0), 0);
        assert_eq!(minute_of(59_999), 0);
        assert_eq!(minute_of(60_000), 60_000);
        assert_eq!(minute_of(-1), -60_000);
        let sales = |id: &str, quantity, revenue| ProductSales {
            product_id: id.into(),
            sku: id.into(),
            name: id.into(),
            quantity,
            revenue,
        };
        let mut products = vec![sales("a", 1, 900), sales("b", 3, 300), sales("c", 3, 600)];
        rank(&mut products);
        let order: Vec<&str> = products.iter().map(|p| p.product_id.as_str()).collect();
        assert_eq!(order, ["c", "b", "a"]);
    }

    #[test]
    fn conversion_is_confirmed_over_created() {
        let mut totals = Totals::default();
        assert_eq!(conversion_rate(&totals), 0.0);
        totals.orders_created = 4;
        totals.orders_confirmed = 3;
        assert_eq!(conversion_rate(&totals), 0.75);
    }
}
