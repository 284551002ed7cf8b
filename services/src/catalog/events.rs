//! Events on `catalog-events`, keyed by product id.

use super::model::{Money, Product};
use serde::Serialize;

pub const TOPIC: &str = "catalog-events";

pub const PRODUCT_CREATED: &str = "ProductCreated";
pub const PRODUCT_UPDATED: &str = "ProductUpdated";
pub const PRICE_CHANGED: &str = "PriceChanged";
pub const PRODUCT_DELETED: &str = "ProductDeleted";

/// ProductCreated and ProductUpdated carry the product as it now is.
pub type ProductSnapshot<'a> = &'a Product;

#[derive(Serialize)]
pub struct PriceChanged<'a> {
    pub product_id: &'a str,
    pub sku: &'a str,
    pub old_price: &'a Money,
    pub new_price: &'a Money,
}

#[derive(Serialize)]
pub struct ProductDeleted<'a> {
    pub product_id: &'a str,
    pub sku: &'a str,
}
