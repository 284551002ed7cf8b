//! Reading a JSON request body, with failures worded for the API's users: the field at fault
//! and what it should be, never a Rust type ("expected struct PlaceOrder with 4 elements",
//! "expected u32") nor an extractor's internals.

use super::error::{Rejection, RejectionKind};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

/// The body as a `T`, or an `invalid_body` rejection that says what is wrong and where.
pub async fn read<T: DeserializeOwned>(request: Request) -> Result<T, Rejection> {
    if !is_json(&request) {
        return Err(invalid(
            "send the body as JSON, with `Content-Type: application/json`".to_string(),
            None,
        ));
    }
    let bytes = Bytes::from_request(request, &())
        .await
        .map_err(|_| invalid("the request body could not be read".to_string(), None))?;
    parse(&bytes)
}

/// Pure, for tests: the bytes as a `T`, or a worded rejection.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Rejection> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        describe(&path, error.inner())
    })?;
    // Trailing text after the document is an error too (as axum's `Json` has it).
    deserializer.end().map_err(|error| describe(".", &error))?;
    Ok(value)
}

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase())
        .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"))
}

fn invalid(message: String, field: Option<String>) -> Rejection {
    Rejection {
        kind: RejectionKind::Invalid,
        code: "invalid_body".to_string(),
        message,
        field,
    }
}

/// A rejection for `error`, met at `path` (serde_path_to_error's `.` for the whole body,
/// else e.g. `items[0].quantity`).
fn describe(path: &str, error: &serde_json::Error) -> Rejection {
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => invalid(
            format!(
                "the body is not valid JSON ({} at line {}, column {})",
                syntax_problem(error),
                error.line(),
                error.column()
            ),
            None,
        ),
        Category::Data => {
            let message = without_position(error);
            // A missing field is reported at the object that lacks it: name the field itself.
            if let Some(name) = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.strip_suffix('`'))
            {
                let field = join(path, name);
                return invalid(format!("`{field}` is required"), Some(field));
            }
            let wording = data_problem(&message);
            match path {
                "." | "" => invalid(wording, None),
                _ => invalid(format!("`{path}`: {wording}"), Some(path.to_string())),
            }
        }
    }
}

fn join(path: &str, name: &str) -> String {
    match path {
        "." | "" => name.to_string(),
        _ => format!("{path}.{name}"),
    }
}

/// serde_json's message without its " at line L column C" tail.
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let tail = format!(" at line {} column {}", error.line(), error.column());
    text.strip_suffix(&tail).unwrap_or(&text).to_string()
}

fn syntax_problem(error: &serde_json::Error) -> String {
    match error.classify() {
        Category::Eof => "it ends early".to_string(),
        _ => without_position(error),
    }
}

/// serde's data errors are "invalid type: <got>, expected <want>", "invalid value: …",
/// "invalid length N, expected …", "unknown field …", "unknown variant …" or a message of a
/// type's own (already in the API's words); the first three name Rust types.
fn data_problem(message: &str) -> String {
    let Some((got, expected)) = message.split_once(", expected ") else {
        return message.to_string();
    };
    if let Some(variant) = got.strip_prefix("unknown variant ") {
        return format!("{variant} is not allowed; expected {expected}");
    }
    if got.starts_with("unknown field ") {
        return format!(
            "{got} (the fields are {})",
            expected.trim_start_matches("one of ")
        );
    }
    let got = if let Some(found) = got
        .strip_prefix("invalid type: ")
        .or_else(|| got.strip_prefix("invalid value: "))
    {
        unexpected(found)
    } else if let Some(length) = got.strip_prefix("invalid length ") {
        let noun = if length == "1" { "item" } else { "items" };
        format!("a list of {length} {noun}")
    } else {
        got.to_string()
    };
    format!("expected {}, got {got}", expected_kind(expected))
}

/// serde's `Unexpected` in JSON terms.
fn unexpected(found: &str) -> String {
    match found {
        "sequence" => "a list".to_string(),
        "map" => "an object".to_string(),
        "unit value" | "null" => "null".to_string(),
        _ => {
            for (rust, json) in [
                ("integer ", "the number "),
                ("floating point ", "the number "),
                ("boolean ", ""),
                ("string ", "the text "),
            ] {
                if let Some(value) = found.strip_prefix(rust) {
                    return format!("{json}{}", value.replace('`', ""));
                }
            }
            found.to_string()
        }
    }
}

/// What a type expects, in JSON terms rather than Rust's.
fn expected_kind(expected: &str) -> String {
    let kind = match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a sequence" => "a list",
        "a map" => "an object",
        "variant identifier" | "field identifier" => "one of the allowed values",
        _ if expected.starts_with("struct ")
            || expected.starts_with("tuple struct ")
            || expected.starts_with("struct variant ") =>
        {
            "an object"
        }
        _ if expected.starts_with("enum ") => "one of the allowed values",
        _ => expected,
    };
    kind.to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Line {
        product_id: String,
        quantity: u32,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct PlaceOrder {
        items: Vec<Line>,
        note: String,
        #[serde(default)]
        kind: Option<Kind>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Gift,
    }

    fn rejection(body: &str) -> (String, Option<String>) {
        let rejection = parse::<PlaceOrder>(body.as_bytes()).unwrap_err();
        assert_eq!(rejection.code, "invalid_body");
        (rejection.message, rejection.field)
    }

    #[test]
    fn failures_name_the_field_in_json_terms_never_a_rust_type() {
        let cases = [
            // An array for a struct: serde reads it by position, so the first element is `items`.
            (
                r#"[1, 2]"#,
                "`[0]`: expected a list, got the number 1",
                Some("[0]"),
            ),
            (r#"[[]]"#, "expected an object, got a list of 1 item", None),
            (r#"{"note": "x"}"#, "`items` is required", Some("items")),
            (
                r#"{"items": [{"product_id": "p", "quantity": -1}], "note": "x"}"#,
                "`items[0].quantity`: expected a whole number, 0 or more, got the number -1",
                Some("items[0].quantity"),
            ),
            (
                r#"{"items": [{"product_id": "p", "quantity": "two"}], "note": "x"}"#,
                "`items[0].quantity`: expected a whole number, 0 or more, got the text \"two\"",
                Some("items[0].quantity"),
            ),
            (
                r#"{"items": [], "note": "x", "kind": "sale"}"#,
                "`kind`: `sale` is not allowed; expected `gift`",
                Some("kind"),
            ),
            (
                r#"{"items": [], "note": 5}"#,
                "`note`: expected a string, got the number 5",
                Some("note"),
            ),
        ];
        for (body, message, field) in cases {
            let (got, got_field) = rejection(body);
            assert_eq!(got, message, "{body}");
            assert_eq!(got_field.as_deref(), field, "{body}");
            for rust in ["struct", "u32", "PlaceOrder", "elements", "sequence"] {
                assert!(!got.contains(rust), "{body}: {got}");
            }
        }
    }

    #[test]
    fn broken_json_says_where() {
        let (message, field) = rejection(r#"{"items": "#);
        assert_eq!(field, None);
        assert!(
            message.starts_with("the body is not valid JSON (it ends early"),
            "{message}"
        );
        let (message, _) = rejection(r#"{"items": [], "note": "x"} trailing"#);
        assert!(message.contains("line 1"), "{message}");
    }
}
