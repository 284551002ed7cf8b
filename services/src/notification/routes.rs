//! Notification's HTTP routes, mounted by the gateway under `/api/notifications`.

use super::NotificationService;
use super::apply::{NOTIFICATIONS, TEMPLATES};
use super::commands::Command;
use super::model::{Channel, Content, DeliveryStatus, Notification, Template};
use super::templates::{check, kind};
use crate::platform::http::{Admin, ApiError, Body, Caller, RequestContext, answer};
use crate::platform::{ReadTx, Rejection};
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::ToSchema;

const MAX_SUBJECT: usize = 200;
const MAX_BODY: usize = 5000;

pub fn router(service: Arc<NotificationService>) -> Router {
    Router::new()
        .route("/", get(my_notifications))
        .route("/all", get(all_notifications))
        .route("/templates", get(list_templates))
        .route("/templates/{name}", put(put_template))
        .with_state(service)
}

#[derive(Serialize, ToSchema)]
pub struct NotificationView {
    pub notification_id: String,
    pub recipient_id: String,
    pub channel: Channel,
    pub template: String,
    pub subject: String,
    pub body: String,
    pub status: DeliveryStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// When it was created (RFC 3339).
    pub at: String,
}

impl From<Notification> for NotificationView {
    fn from(n: Notification) -> NotificationView {
        NotificationView {
            notification_id: n.notification_id,
            recipient_id: n.recipient_id,
            channel: n.channel,
            template: n.template,
            subject: n.subject,
            body: n.body,
            status: n.status,
            failure_reason: n.failure_reason,
            at: crate::platform::time::rfc3339(n.created_at_ms),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct NotificationList {
    pub items: Vec<NotificationView>,
}

#[derive(Serialize, ToSchema)]
pub struct TemplateList {
    pub items: Vec<Template>,
}

/// A template's new text: subject and body per channel (replaces all its channels).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutTemplate {
    pub channels: BTreeMap<Channel, Content>,
}

fn list(mut all: Vec<Notification>) -> axum::Json<NotificationList> {
    all.sort_by(|a, b| {
        a.created_at_ms
            .cmp(&b.created_at_ms)
            .then_with(|| a.notification_id.cmp(&b.notification_id))
    });
    axum::Json(NotificationList {
        items: all.into_iter().map(NotificationView::from).collect(),
    })
}

/// The caller's notifications, oldest first.
#[utoipa::path(get, path = "/api/notifications",
    responses((status = 200, body = NotificationList), (status = 401)),
    security(("bearer" = [])), tag = "notifications")]
pub async fn my_notifications(
    State(service): State<Arc<NotificationService>>,
    Caller(caller): Caller,
) -> Result<axum::Json<NotificationList>, ApiError> {
    let store: &dyn ReadTx = service.engine.store().as_ref();
    let prefix = format!("{}/", caller.user_id);
    Ok(list(NOTIFICATIONS.scan_prefix(store, &prefix)?))
}

/// Every notification (admin).
#[utoipa::path(get, path = "/api/notifications/all",
    responses((status = 200, body = NotificationList), (status = 403)),
    security(("bearer" = [])), tag = "notifications")]
pub async fn all_notifications(
    State(service): State<Arc<NotificationService>>,
    _admin: Admin,
) -> Result<axum::Json<NotificationList>, ApiError> {
    let store: &dyn ReadTx = service.engine.store().as_ref();
    Ok(list(NOTIFICATIONS.scan(store)?))
}

/// The templates (admin).
#[utoipa::path(get, path = "/api/notifications/templates",
    responses((status = 200, body = TemplateList), (status = 403)),
    security(("bearer" = [])), tag = "notifications")]
pub async fn list_templates(
    State(service): State<Arc<NotificationService>>,
    _admin: Admin,
) -> Result<axum::Json<TemplateList>, ApiError> {
    let store: &dyn ReadTx = service.engine.store().as_ref();
    Ok(axum::Json(TemplateList {
        items: TEMPLATES.scan(store)?,
    }))
}

/// Replace a template's text (admin). A text naming a variable the template does not have is
/// refused (400), so no message goes out with a hole in it.
#[utoipa::path(put, path = "/api/notifications/templates/{name}", request_body = PutTemplate,
    responses((status = 200, body = Template), (status = 400), (status = 403), (status = 404)),
    security(("bearer" = [])), tag = "notifications")]
pub async fn put_template(
    State(service): State<Arc<NotificationService>>,
    context: RequestContext,
    _admin: Admin,
    Path(name): Path<String>,
    Body(request): Body<PutTemplate>,
) -> Result<axum::Json<Template>, ApiError> {
    let Some(kind) = kind(&name) else {
        return Err(Rejection::not_found("template").into());
    };
    if request.channels.is_empty() {
        return Err(Rejection::invalid("channels", "a template has at least one channel").into());
    }
    for (channel, content) in &request.channels {
        let field = |part: &str| format!("channels.{}.{part}", channel.as_str());
        for (part, text, max) in [
            ("subject", &content.subject, MAX_SUBJECT),
            ("body", &content.body, MAX_BODY),
        ] {
            if text.trim().is_empty() || text.chars().count() > max {
                return Err(Rejection::invalid(
                    &field(part),
                    format!("{part} has 1 to {max} characters"),
                )
                .into());
            }
            check(text, kind.variables)
                .map_err(|message| Rejection::invalid(&field(part), message))?;
        }
    }
    let command = Command::PutTemplate {
        name: name.clone(),
        channels: request.channels,
    };
    answer(service.engine.submit(command, context.command()).await)?;
    let store: &dyn ReadTx = service.engine.store().as_ref();
    match TEMPLATES.get(store, &name)? {
        Some(template) => Ok(axum::Json(template)),
        None => Err(Rejection::not_found("template").into()),
    }
}

/// Notification's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(my_notifications, all_notifications, list_templates, put_template),
    tags((name = "notifications"))
)]
pub struct NotificationApi;
