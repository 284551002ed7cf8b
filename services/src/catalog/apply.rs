//! The catalog state machine.

use super::commands::Command;
use super::events::{self, TOPIC};
use super::model::{Author, Product};
use crate::platform::store::{Table, Transaction, UniqueIndex};
use crate::platform::{CommandMeta, Rejection, StateMachine, StoreError};

pub const PRODUCTS: Table<Product> = Table::new("product");
pub const SKUS: UniqueIndex = UniqueIndex::new("sku");
pub const AUTHORS: Table<Author> = Table::new("author");

pub struct Catalog;

impl StateMachine for Catalog {
    type Command = Command;
    /// The product after the command (None after a delete).
    type Output = Option<Product>;

    fn apply(
        &self,
        tx: &mut dyn Transaction,
        command: &Command,
        meta: &CommandMeta,
    ) -> Result<Result<Option<Product>, Rejection>, StoreError> {
        match command {
            Command::Create(product) => {
                if SKUS.get(tx, &product.sku)?.is_some() {
                    return Ok(Err(Rejection::conflict(
                        "sku_taken",
                        Some("sku"),
                        format!("a product with SKU {} exists", product.sku),
                    )));
                }
                let mut product = product.clone();
                product.created_at_ms = meta.at_ms;
                product.updated_at_ms = meta.at_ms;
                PRODUCTS.put(tx, &product.id, &product)?;
                SKUS.put(tx, &product.sku, &product.id);
                let event = meta.event(events::PRODUCT_CREATED, &product.id, 1, &product)?;
                tx.emit(TOPIC, event);
                Ok(Ok(Some(product)))
            }
            Command::Update {
                id,
                name,
                description,
                category,
                weight_grams,
                metadata,
            } => {
                let Some(mut product) = PRODUCTS.get(tx, id)? else {
                    return Ok(Err(Rejection::not_found("product")));
                };
                if let Some(name) = name {
                    product.name = name.clone();
                }
                if let Some(description) = description {
                    product.description = description.clone();
                }
                if let Some(category) = category {
                    product.category = category.clone();
                }
                if let Some(weight) = weight_grams {
                    product.weight_grams = Some(*weight);
                }
                if let Some(metadata) = metadata {
                    product.metadata = metadata.clone();
                }
                product.updated_at_ms = meta.at_ms;
                PRODUCTS.put(tx, id, &product)?;
                tx.emit(TOPIC, meta.event(events::PRODUCT_UPDATED, id, 1, &product)?);
                Ok(Ok(Some(product)))
            }
            Command::ChangePrice { id, price } => {
                let Some(mut product) = PRODUCTS.get(tx, id)? else {
                    return Ok(Err(Rejection::not_found("product")));
                };
                let old_price = std::mem::replace(&mut product.price, price.clone());
                product.updated_at_ms = meta.at_ms;
                PRODUCTS.put(tx, id, &product)?;
                let data = events::PriceChanged {
                    product_id: id,
                    sku: &product.sku,
                    old_price: &old_price,
                    new_price: price,
                };
                tx.emit(TOPIC, meta.event(events::PRICE_CHANGED, id, 1, data)?);
                Ok(Ok(Some(product)))
            }
            Command::Delete { id } => {
                let Some(product) = PRODUCTS.get(tx, id)? else {
                    return Ok(Err(Rejection::not_found("product")));
                };
                PRODUCTS.delete(tx, id);
                SKUS.delete(tx, &product.sku);
                let data = events::ProductDeleted {
                    product_id: id,
                    sku: &product.sku,
                };
                tx.emit(TOPIC, meta.event(events::PRODUCT_DELETED, id, 1, data)?);
                Ok(Ok(None))
            }
            Command::RecordAuthor {
                user_id,
                name,
                roles,
            } => {
                let mut author = AUTHORS.get(tx, user_id)?.unwrap_or_else(|| Author {
                    id: user_id.clone(),
                    name: None,
                    roles: Vec::new(),
                    version: 0,
                    updated_at_ms: meta.at_ms,
                });
                if let Some(name) = name {
                    author.name = Some(name.clone());
                }
                if let Some(roles) = roles {
                    author.roles = roles.clone();
                }
                author.version += 1;
                author.updated_at_ms = meta.at_ms;
                AUTHORS.put(tx, user_id, &author)?;
                // A read model: nothing to tell other services.
                Ok(Ok(None))
            }
        }
    }
}
