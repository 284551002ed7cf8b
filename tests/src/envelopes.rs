//! Event and command envelopes as the services exchange them (docs/order-flow.md), produced
//! with librdkafka straight onto their topics, keyed by aggregate id, as any producer could.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::kafka::{self, TestProducer};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh envelope id (unique within the test process).
pub fn fresh_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("test-envelope-{}-{n}", std::process::id())
}

/// An envelope with id `id`, `occurred_at` given.
pub fn envelope_at(
    id: &str,
    event_type: &str,
    aggregate_id: &str,
    occurred_at: &str,
    data: Value,
) -> Value {
    json!({
        "id": id,
        "type": event_type,
        "aggregate_id": aggregate_id,
        "occurred_at": occurred_at,
        "correlation_id": format!("corr-{id}"),
        "causation_id": null,
        "version": 1,
        "data": data,
    })
}

/// An envelope with a fresh id, occurring now.
pub fn envelope(event_type: &str, aggregate_id: &str, data: Value) -> Value {
    envelope_at(&fresh_id(), event_type, aggregate_id, &now_rfc3339(), data)
}

/// Sends `envelope` to `topic`, keyed by its aggregate id (not flushed).
pub fn send(producer: &TestProducer, topic: &str, envelope: &Value) {
    let key = envelope["aggregate_id"]
        .as_str()
        .expect("an envelope has an aggregate id");
    kafka::send(
        producer,
        topic,
        Some(key),
        &envelope.to_string(),
        None,
        None,
    );
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0);
    rfc3339(ms)
}

/// RFC 3339 UTC for epoch milliseconds (civil_from_days).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        (of_day % 3600) / 60,
        of_day % 60,
        ms.rem_euclid(1000)
    )
}
