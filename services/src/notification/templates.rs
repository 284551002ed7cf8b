//! The kinds of notification, their variables and default texts, and `{{variable}}`
//! substitution. A template's variables are fixed by the event that sends it, so a text
//! naming any other variable is refused when saved rather than sent with a hole in it.

use super::model::{Channel, Content, Template};
use std::collections::BTreeMap;

/// One kind of notification: its template name, the event that sends it, its variables.
pub struct Kind {
    pub name: &'static str,
    pub event_type: &'static str,
    pub variables: &'static [&'static str],
    subject: &'static str,
    body: &'static str,
}

pub const KINDS: &[Kind] = &[
    Kind {
        name: "welcome",
        event_type: "UserRegistered",
        variables: &["name", "email", "user_id"],
        subject: "Welcome, {{name}}",
        body: "Hello {{name}}, your account {{email}} is ready. Happy shopping!",
    },
    Kind {
        name: "order_confirmed",
        event_type: "OrderConfirmed",
        variables: &["name", "order_id", "total", "tracking_number"],
        subject: "Order {{order_id}} confirmed",
        body: "Hello {{name}}, your order {{order_id}} for {{total}} is confirmed. \
               Tracking number: {{tracking_number}}.",
    },
    Kind {
        name: "payment_received",
        event_type: "PaymentProcessed",
        variables: &["name", "order_id", "payment_id", "amount", "card_last4"],
        subject: "Payment received for order {{order_id}}",
        body: "Hello {{name}}, we received {{amount}} for order {{order_id}} \
               (card ending {{card_last4}}).",
    },
    Kind {
        name: "order_cancelled",
        event_type: "OrderCancelled",
        variables: &["name", "order_id", "total", "reason"],
        subject: "Order {{order_id}} cancelled",
        body: "Hello {{name}}, your order {{order_id}} for {{total}} was cancelled: \
               {{reason}}. Any payment taken is refunded.",
    },
    Kind {
        name: "registration_attempt",
        event_type: "RegistrationAttempted",
        variables: &["name", "email"],
        subject: "Someone tried to register with your email",
        body: "Hello {{name}}, someone tried to create an account with {{email}}, which \
               already has yours. If it was you, sign in instead (or change your \
               password); if not, nothing changed.",
    },
    Kind {
        name: "refresh_token_reused",
        event_type: "RefreshTokenReused",
        variables: &["name", "session_id"],
        subject: "We signed you out to protect your account",
        body: "Hello {{name}}, a sign-in token of yours was used twice, which happens when \
               it was copied. We ended that session ({{session_id}}); sign in again, and \
               change your password if this was not you.",
    },
    Kind {
        name: "shipment_delivered",
        event_type: "ShipmentDelivered",
        variables: &["name", "order_id", "shipment_id", "tracking_number"],
        subject: "Order {{order_id}} delivered",
        body: "Hello {{name}}, your order {{order_id}} was delivered \
               (tracking number {{tracking_number}}).",
    },
];

pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|kind| kind.name == name)
}

impl Kind {
    /// The template as first seeded: an email.
    pub fn default_template(&self) -> Template {
        Template {
            name: self.name.to_string(),
            event_type: self.event_type.to_string(),
            variables: self.variables.iter().map(|v| v.to_string()).collect(),
            channels: BTreeMap::from([(
                Channel::Email,
                Content {
                    subject: self.subject.to_string(),
                    body: self.body.to_string(),
                },
            )]),
            updated_at_ms: 0,
        }
    }
}

/// The variable names `text` uses, or why it is malformed.
pub fn variables_in(text: &str) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = rest.get(start + 2..).unwrap_or_default();
        let Some(end) = after.find("}}") else {
            return Err("a '{{' has no closing '}}'".to_string());
        };
        found.push(after.get(..end).unwrap_or_default().trim().to_string());
        rest = after.get(end + 2..).unwrap_or_default();
    }
    Ok(found)
}

/// Checks that `text` uses only `allowed` variables.
pub fn check(text: &str, allowed: &[&str]) -> Result<(), String> {
    for variable in variables_in(text)? {
        if !allowed.contains(&variable.as_str()) {
            return Err(format!(
                "unknown variable {{{{{variable}}}}}; this template has {}",
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

/// `text` with every `{{variable}}` replaced by its value (empty when it has none).
pub fn render(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(rest.get(..start).unwrap_or_default());
        let after = rest.get(start + 2..).unwrap_or_default();
        let Some(end) = after.find("}}") else {
            out.push_str(rest.get(start..).unwrap_or_default());
            return out;
        };
        let name = after.get(..end).unwrap_or_default().trim();
        out.push_str(values.get(name).map(String::as_str).unwrap_or_default());
        rest = after.get(end + 2..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_variables_and_check_refuses_unknown_ones() {
        let values = BTreeMap::from([
            ("name".to_string(), "Ada".to_string()),
            ("order_id".to_string(), "o-1".to_string()),
        ]);
        assert_eq!(
            render("Hi {{name}}, order {{ order_id }}{{missing}}.", &values),
            "Hi Ada, order o-1."
        );
        assert!(check("Hi {{name}}", &["name"]).is_ok());
        assert!(check("Hi {{nam}}", &["name"]).is_err());
        assert!(check("Hi {{name", &["name"]).is_err());
        for kind in KINDS {
            assert!(check(kind.subject, kind.variables).is_ok(), "{}", kind.name);
            assert!(check(kind.body, kind.variables).is_ok(), "{}", kind.name);
        }
    }
}
