//! `commerce bench orders`: the whole order flow under load, through the gateway.
//!
//! Creates a product with ample stock (as the admin), registers one customer per client, then
//! `--clients` workers each place an order with a good test card and poll it until it is final,
//! back to back, for `--duration-secs`. It reports confirmed orders per second and the time
//! from POST to `confirmed` (p50, p99): the saga's full round trip through inventory, payment
//! and shipping over the log, as a customer sees it. Start the node with a high
//! `COMMERCE_RATE_LIMIT_PER_MINUTE`: polling is many requests.

use super::bench_http::login;
use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Longest POST -> final wait recorded (and the give-up point for one order).
const MAX_WAIT: Duration = Duration::from_secs(60);
const POLL_EVERY: Duration = Duration::from_millis(10);
const STOCK: u64 = 10_000_000;

#[derive(Debug, clap::Args)]
pub struct BenchOrdersArgs {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, env = "COMMERCE_ADMIN_EMAIL")]
    pub admin_email: String,
    #[arg(long, env = "COMMERCE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: String,
    /// Customers placing orders at once.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
}

#[derive(Default)]
struct Outcomes {
    confirmed: u64,
    cancelled: u64,
    /// Refused POSTs, transport errors, orders not final within MAX_WAIT.
    failed: u64,
}

pub async fn run(args: BenchOrdersArgs) -> anyhow::Result<()> {
    if args.clients == 0 || args.duration_secs == 0 {
        bail!("--clients and --duration-secs must be at least 1");
    }
    let base = args.url.trim_end_matches('/').to_string();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients * 2)
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")?;
    let admin = login(&client, &base, &args.admin_email, &args.admin_password).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let run = run.get(..8).unwrap_or("run").to_string();
    let product_id = prepare_product(&client, &base, &admin, &run).await?;
    let mut tokens = Vec::with_capacity(args.clients);
    for n in 0..args.clients {
        tokens.push(customer(&client, &base, &format!("bench-{run}-{n}@example.com")).await?);
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_secs);
    let mut workers = Vec::new();
    for token in tokens {
        let (client, base, product_id) = (client.clone(), base.clone(), product_id.clone());
        workers.push(tokio::spawn(async move {
            let max_us = u64::try_from(MAX_WAIT.as_micros()).unwrap_or(u64::MAX);
            let mut latency = Histogram::<u64>::new_with_bounds(1, max_us, 3)?;
            let mut outcomes = Outcomes::default();
            while Instant::now() < deadline {
                let sent = Instant::now();
                match place_and_wait(&client, &base, &token, &product_id).await {
                    Some(status) if status == "confirmed" => {
                        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(max_us);
                        latency.saturating_record(micros);
                        outcomes.confirmed += 1;
                    }
                    Some(_) => outcomes.cancelled += 1,
                    None => outcomes.failed += 1,
                }
            }
            Ok::<_, hdrhistogram::CreationError>((latency, outcomes))
        }));
    }
    let max_us = u64::try_from(MAX_WAIT.as_micros()).unwrap_or(u64::MAX);
    let mut latency = Histogram::<u64>::new_with_bounds(1, max_us, 3)?;
    let mut total = Outcomes::default();
    for worker in workers {
        let (worker_latency, outcomes) = worker.await.context("a bench worker panicked")??;
        latency.add(&worker_latency)?;
        total.confirmed += outcomes.confirmed;
        total.cancelled += outcomes.cancelled;
        total.failed += outcomes.failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ms = |micros: u64| micros as f64 / 1000.0;
    println!(
        "clients {}, {elapsed:.1} s: {} confirmed ({:.1} confirmed orders/s), {} cancelled, {} failed",
        args.clients,
        total.confirmed,
        total.confirmed as f64 / elapsed,
        total.cancelled,
        total.failed
    );
    println!(
        "POST -> confirmed ms: p50 {:.1}, p90 {:.1}, p99 {:.1}, max {:.1}",
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.9)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.max())
    );
    if total.cancelled + total.failed > 0 {
        eprintln!(
            "warning: not every order confirmed (rate limit? step timeouts?); see the node's log"
        );
    }
    Ok(())
}

/// A product with stock for the whole run; its id.
async fn prepare_product(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    run: &str,
) -> anyhow::Result<String> {
    let product: Value = expect_json(
        client
            .post(format!("{base}/api/catalog/products"))
            .bearer_auth(admin)
            .json(&json!({
                "sku": format!("bench-order-{run}"),
                "name": "Bench order product",
                "category": "bench",
                "price": {"amount": 1999, "currency": "USD"},
                "weight_grams": 250,
            })),
        "create the bench product",
    )
    .await?;
    let id = product
        .get("id")
        .and_then(Value::as_str)
        .context("the product answer has no id")?
        .to_string();
    expect_json(
        client
            .put(format!("{base}/api/inventory/{id}"))
            .bearer_auth(admin)
            .json(&json!({"available": STOCK})),
        "stock the bench product",
    )
    .await?;
    Ok(id)
}

/// Registers a customer and logs in; the access token.
async fn customer(client: &reqwest::Client, base: &str, email: &str) -> anyhow::Result<String> {
    let password = "bench-password-1";
    expect_json(
        client
            .post(format!("{base}/api/identity/register"))
            .json(&json!({"email": email, "password": password, "name": "Bench customer"})),
        "register a bench customer",
    )
    .await?;
    login(client, base, email, password).await
}

/// Places one order and polls it; its final status, None if refused or not final in time.
async fn place_and_wait(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    product_id: &str,
) -> Option<String> {
    let body = json!({
        "items": [{"product_id": product_id, "quantity": 1}],
        "shipping_address": {"name": "Bench", "line1": "1 Main St", "city": "Berlin",
            "postal_code": "10115", "country": "DE"},
        "payment": {"card_number": "4242424242424242"},
    });
    let response = client
        .post(format!("{base}/api/orders"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .ok()?;
    if response.status().as_u16() != 202 {
        return None;
    }
    let placed: Value = response.json().await.ok()?;
    let id = placed.get("id")?.as_str()?.to_string();
    let give_up = Instant::now() + MAX_WAIT;
    while Instant::now() < give_up {
        tokio::time::sleep(POLL_EVERY).await;
        let Ok(response) = client
            .get(format!("{base}/api/orders/{id}"))
            .bearer_auth(token)
            .send()
            .await
        else {
            continue;
        };
        let Ok(order) = response.json::<Value>().await else {
            continue;
        };
        if let Some(status @ ("confirmed" | "cancelled")) =
            order.get("status").and_then(Value::as_str)
        {
            return Some(status.to_string());
        }
    }
    None
}

async fn expect_json(request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot {what}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("cannot {what}: {status} {body}");
    }
    Ok(body)
}
