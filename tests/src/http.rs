//! A JSON client for a node's REST API (reqwest, blocking), with helpers for the calls most
//! tests need: sign up, log in, create a product.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::Node;

/// An answer: status, headers and the body as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// `error.code` of an error answer.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Panics with the answer unless the status is `status`.
    #[track_caller]
    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(
            self.status, status,
            "unexpected answer: {} {}",
            self.status, self.text
        );
        self
    }
}

#[derive(Clone)]
pub struct Api {
    base: String,
    client: Client,
}

impl Api {
    pub fn new(node: &Node) -> Api {
        Api {
            base: format!("http://{}", node.http_addr()),
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("cannot build the HTTP client"),
        }
    }

    /// A client whose connections come from `local` (another loopback address, e.g.
    /// 127.0.0.2), so the node sees it as another client IP.
    pub fn from_address(node: &Node, local: std::net::IpAddr) -> Api {
        Api {
            base: format!("http://{}", node.http_addr()),
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .local_address(local)
                .build()
                .expect("cannot build the HTTP client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path`, with a bearer token when given.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub fn send(&self, builder: RequestBuilder) -> Reply {
        self.try_send(builder).expect("HTTP request failed")
    }

    /// [`Api::send`] for a test that expects a node to be down: a refused connection, a
    /// reset or a timeout is an error, not a panic.
    pub fn try_send(&self, builder: RequestBuilder) -> Result<Reply, reqwest::Error> {
        let response = builder.send()?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text()?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            body,
            text,
        })
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(self.request(Method::GET, path, token))
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(self.request(Method::POST, path, token).json(body))
    }

    pub fn put(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(self.request(Method::PUT, path, token).json(body))
    }

    pub fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(self.request(Method::DELETE, path, token))
    }

    /// Registers a customer; returns the new user.
    pub fn register(&self, email: &str, password: &str, name: &str) -> Value {
        self.post(
            "/api/identity/register",
            None,
            &serde_json::json!({"email": email, "password": password, "name": name}),
        )
        .expect(201)
        .body
    }

    /// Logs in; returns the token answer (`access_token`, `refresh_token`, ...).
    pub fn login(&self, email: &str, password: &str) -> Value {
        self.post(
            "/api/identity/login",
            None,
            &serde_json::json!({"email": email, "password": password}),
        )
        .expect(200)
        .body
    }

    /// Logs in and returns only the access token.
    pub fn token(&self, email: &str, password: &str) -> String {
        self.login(email, password)["access_token"]
            .as_str()
            .expect("login answered no access token")
            .to_string()
    }
}

/// Environment for a node with a known admin account.
pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const ADMIN_ENV: [(&str, &str); 2] = [
    ("COMMERCE_ADMIN_EMAIL", ADMIN_EMAIL),
    ("COMMERCE_ADMIN_PASSWORD", ADMIN_PASSWORD),
];

/// A product body with this SKU.
pub fn product(sku: &str, name: &str, category: &str, amount: i64) -> Value {
    serde_json::json!({
        "sku": sku,
        "name": name,
        "description": format!("{name}, the test product"),
        "category": category,
        "price": {"amount": amount, "currency": "USD"},
        "weight_grams": 250,
    })
}

/// Event envelopes on `topic`, decoded from JSON, in log order (one partition topics).
pub fn events(node: &Node, topic: &str) -> Vec<Value> {
    let partitions = crate::kafka::partitions_of(&node.bootstrap(), topic).unwrap_or_default();
    crate::kafka::read_all(
        &node.bootstrap(),
        topic,
        &partitions,
        Duration::from_secs(30),
    )
    .iter()
    .map(|record| {
        let envelope: Value = serde_json::from_slice(&record.value).expect("an event is JSON");
        assert_eq!(
            record.key.as_deref(),
            envelope["aggregate_id"].as_str().map(str::as_bytes),
            "events are keyed by aggregate id"
        );
        envelope
    })
    .collect()
}

/// Waits until the events on `topic` satisfy `done`, then returns them all.
pub fn wait_for_events(
    node: &Node,
    topic: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    crate::wait_for(what, Duration::from_secs(30), || {
        let partitions = crate::kafka::partitions_of(&node.bootstrap(), topic)?;
        if partitions.is_empty() {
            return None;
        }
        let all = events(node, topic);
        done(&all).then_some(all)
    })
}

/// Waits until `topic` holds an event matching `pred`, then returns all events.
pub fn wait_for_event(
    node: &Node,
    topic: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    wait_for_events(node, topic, what, |all| all.iter().any(&pred))
}

/// The record headers of every event on partition 0 of `topic`, with the record's key:
/// (aggregate id, header name -> UTF-8 value), in log order.
pub fn event_headers(node: &Node, topic: &str) -> Vec<(String, HashMap<String, String>)> {
    use rdkafka::Message;
    use rdkafka::consumer::Consumer;
    use rdkafka::message::Headers;

    let consumer = crate::kafka::consumer(&node.bootstrap());
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("bad assignment");
    consumer.assign(&assignment).expect("cannot assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic} timed out"
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                let mut headers = HashMap::new();
                if let Some(all) = message.headers() {
                    for header in all.iter() {
                        let value = header
                            .value
                            .map(|value| String::from_utf8_lossy(value).into_owned());
                        headers.insert(header.key.to_string(), value.unwrap_or_default());
                    }
                }
                out.push((key, headers));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return out,
            Some(Err(error)) => eprintln!("consumer error while reading {topic}: {error}"),
        }
    }
}
