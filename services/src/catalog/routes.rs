//! Catalog's HTTP routes, mounted by the gateway under `/api/catalog`.

use super::CatalogService;
use super::apply::{AUTHORS, PRODUCTS};
use super::commands::Command;
use super::model::{Author, Money, Product, check_sku, check_text};
use crate::platform::http::{Admin, ApiError, Body, Paging, RequestContext, answer};
use crate::platform::{Rejection, StoreError};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

pub fn router(service: Arc<CatalogService>) -> Router {
    Router::new()
        .route("/products", get(list_products).post(create_product))
        .route(
            "/products/{id}",
            get(get_product).put(update_product).delete(delete_product),
        )
        .route("/products/{id}/price", put(change_price))
        .route("/categories", get(list_categories))
        .route("/authors/{id}", get(get_author))
        .with_state(service)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    pub sku: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    pub price: Money,
    pub weight_grams: Option<u32>,
    #[schema(value_type = Object)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub weight_grams: Option<u32>,
    #[schema(value_type = Object)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Case-insensitive text in the name, description or SKU.
    pub q: Option<String>,
    pub category: Option<String>,
    /// 1-based.
    pub page: Option<usize>,
    pub page_size: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<Product>,
    pub page: usize,
    pub page_size: usize,
    pub total: usize,
}

#[derive(Serialize, ToSchema)]
pub struct CategoryView {
    pub name: String,
    pub products: usize,
}

/// Create a product (admin).
#[utoipa::path(post, path = "/api/catalog/products", request_body = CreateProduct,
    responses((status = 201, body = Product), (status = 400), (status = 403), (status = 409)),
    security(("bearer" = [])), tag = "catalog")]
pub async fn create_product(
    State(service): State<Arc<CatalogService>>,
    context: RequestContext,
    Admin(admin): Admin,
    Body(request): Body<CreateProduct>,
) -> Result<impl IntoResponse, ApiError> {
    let product = Product {
        id: uuid::Uuid::new_v4().to_string(),
        sku: check_sku(&request.sku)?,
        name: check_text("name", &request.name, 200, true)?,
        description: check_text("description", &request.description, 5000, false)?,
        category: check_text("category", &request.category, 100, true)?,
        price: request.price.validate("price")?,
        weight_grams: request.weight_grams,
        metadata: request.metadata.unwrap_or_default(),
        created_at_ms: 0,
        updated_at_ms: 0,
        created_by: Some(admin.user_id),
    };
    let product = service.submit(Command::Create(product), &context).await?;
    Ok((StatusCode::CREATED, axum::Json(product)))
}

/// Browse products: text search, category filter, pages.
#[utoipa::path(get, path = "/api/catalog/products", params(ListQuery),
    responses((status = 200, body = ProductPage), (status = 400)), tag = "catalog")]
pub async fn list_products(
    State(service): State<Arc<CatalogService>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<ProductPage>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| Rejection::invalid("query", rejection.body_text()))?;
    let paging = Paging::parse(query.page, query.page_size)?;
    let needle = query
        .q
        .map(|q| q.trim().to_lowercase())
        .filter(|q| !q.is_empty());
    let all = service.all_products()?;
    let matching: Vec<&Product> = all
        .iter()
        .filter(|product| {
            query
                .category
                .as_ref()
                .is_none_or(|category| product.category == *category)
        })
        .filter(|product| {
            needle.as_ref().is_none_or(|needle| {
                product.name.to_lowercase().contains(needle)
                    || product.description.to_lowercase().contains(needle)
                    || product.sku.to_lowercase().contains(needle)
            })
        })
        .collect();
    let total = matching.len();
    let items = paging.slice(matching).cloned().collect();
    Ok(axum::Json(ProductPage {
        items,
        page: paging.page,
        page_size: paging.page_size,
        total,
    }))
}

/// One product.
#[utoipa::path(get, path = "/api/catalog/products/{id}",
    responses((status = 200, body = Product), (status = 404)), tag = "catalog")]
pub async fn get_product(
    State(service): State<Arc<CatalogService>>,
    Path(id): Path<String>,
) -> Result<axum::Json<Product>, ApiError> {
    match PRODUCTS.get(service.engine.store().as_ref(), &id)? {
        Some(product) => Ok(axum::Json(product)),
        None => Err(Rejection::not_found("product").into()),
    }
}

/// Update a product's descriptive fields (admin).
#[utoipa::path(put, path = "/api/catalog/products/{id}", request_body = UpdateProduct,
    responses((status = 200, body = Product), (status = 400), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "catalog")]
pub async fn update_product(
    State(service): State<Arc<CatalogService>>,
    context: RequestContext,
    _admin: Admin,
    Path(id): Path<String>,
    Body(request): Body<UpdateProduct>,
) -> Result<axum::Json<Product>, ApiError> {
    let command = Command::Update {
        id,
        name: request
            .name
            .map(|name| check_text("name", &name, 200, true))
            .transpose()?,
        description: request
            .description
            .map(|text| check_text("description", &text, 5000, false))
            .transpose()?,
        category: request
            .category
            .map(|category| check_text("category", &category, 100, true))
            .transpose()?,
        weight_grams: request.weight_grams,
        metadata: request.metadata,
    };
    Ok(axum::Json(service.submit(command, &context).await?))
}

/// Change a product's price (admin).
#[utoipa::path(put, path = "/api/catalog/products/{id}/price", request_body = Money,
    responses((status = 200, body = Product), (status = 400), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "catalog")]
pub async fn change_price(
    State(service): State<Arc<CatalogService>>,
    context: RequestContext,
    _admin: Admin,
    Path(id): Path<String>,
    Body(price): Body<Money>,
) -> Result<axum::Json<Product>, ApiError> {
    let command = Command::ChangePrice {
        id,
        price: price.validate("price")?,
    };
    Ok(axum::Json(service.submit(command, &context).await?))
}

/// Delete a product (admin).
#[utoipa::path(delete, path = "/api/catalog/products/{id}",
    responses((status = 204), (status = 403), (status = 404)), security(("bearer" = [])), tag = "catalog")]
pub async fn delete_product(
    State(service): State<Arc<CatalogService>>,
    context: RequestContext,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    answer(
        service
            .engine
            .submit(Command::Delete { id }, context.command())
            .await,
    )?;
    service.invalidate();
    Ok(StatusCode::NO_CONTENT)
}

/// What catalog knows of a user (admin): its read model from `identity-events`.
#[utoipa::path(get, path = "/api/catalog/authors/{id}",
    responses((status = 200, body = Author), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "catalog")]
pub async fn get_author(
    State(service): State<Arc<CatalogService>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<Author>, ApiError> {
    match AUTHORS.get(service.engine.store().as_ref(), &id)? {
        Some(author) => Ok(axum::Json(author)),
        None => Err(Rejection::not_found("author").into()),
    }
}

/// Categories in use, with their product counts.
#[utoipa::path(get, path = "/api/catalog/categories", responses((status = 200, body = [CategoryView])), tag = "catalog")]
pub async fn list_categories(
    State(service): State<Arc<CatalogService>>,
) -> Result<axum::Json<Vec<CategoryView>>, ApiError> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for product in service.all_products()?.iter() {
        *counts.entry(product.category.clone()).or_default() += 1;
    }
    Ok(axum::Json(
        counts
            .into_iter()
            .map(|(name, products)| CategoryView { name, products })
            .collect(),
    ))
}

impl CatalogService {
    /// Submits a command that answers with a product, and drops the cached list.
    async fn submit(
        &self,
        command: Command,
        context: &RequestContext,
    ) -> Result<Product, ApiError> {
        let answer = answer(self.engine.submit(command, context.command()).await);
        self.invalidate();
        answer?.ok_or_else(|| {
            ApiError::Store(StoreError::Task("the command answered no product".into()))
        })
    }
}

/// Catalog's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create_product,
        list_products,
        get_product,
        update_product,
        change_price,
        delete_product,
        list_categories,
        get_author,
    ),
    tags((name = "catalog"))
)]
pub struct CatalogApi;
