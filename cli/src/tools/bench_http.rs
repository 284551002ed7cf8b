//! `commerce bench http`: a load generator for the REST API through the gateway.
//!
//! `--concurrency` workers (tokio tasks sharing one reqwest connection pool) send requests
//! back to back for `--duration` seconds; each request's latency (send to full body) goes to
//! an HDR histogram. Scenarios:
//! - `catalog-read`: anonymous browsing, alternating a product page (`GET
//!   /api/catalog/products?page=..`) and one product (`GET /api/catalog/products/{id}`); with
//!   admin credentials it first seeds products if the catalog has fewer than a page's worth.
//! - `product-write`: `POST /api/catalog/products` with a fresh SKU each time, as the admin
//!   (`COMMERCE_ADMIN_EMAIL` / `COMMERCE_ADMIN_PASSWORD`): every request is a logged, fsynced
//!   command with its outbox event.
//!
//! The gateway's per-client rate limit (100 requests/minute by default) applies to the bench
//! like to anyone: start the node with a high `COMMERCE_RATE_LIMIT_PER_MINUTE`; 429 answers are
//! counted apart so a throttled run is obvious.

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The histogram's range: up to the client timeout. (An auto-resizing histogram would clamp
/// `saturating_record` at its small initial range, ~2 ms.)
const MAX_LATENCY_US: u64 = 60_000_000;
/// Products seeded for the read scenario when the catalog has fewer.
const SEED_PRODUCTS: usize = 100;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Scenario {
    CatalogRead,
    ProductWrite,
}

#[derive(Debug, clap::Args)]
pub struct BenchHttpArgs {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// The admin who writes (product-write, and seeding for catalog-read).
    #[arg(long, env = "COMMERCE_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    #[arg(long, env = "COMMERCE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
}

/// What one worker saw.
struct WorkerStats {
    latency_us: Histogram<u64>,
    /// Answers by status (0: no answer, a transport error).
    statuses: BTreeMap<u16, u64>,
}

pub async fn run(args: BenchHttpArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.duration == 0 {
        bail!("--concurrency and --duration must be at least 1");
    }
    let base = args.target.trim_end_matches('/').to_string();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")?;
    let token = match (&args.admin_email, &args.admin_password) {
        (Some(email), Some(password)) => Some(login(&client, &base, email, password).await?),
        _ => None,
    };
    let ids = match args.scenario {
        Scenario::CatalogRead => Arc::new(prepare_reads(&client, &base, token.as_deref()).await?),
        Scenario::ProductWrite => {
            if token.is_none() {
                bail!(
                    "product-write needs the admin: set COMMERCE_ADMIN_EMAIL and COMMERCE_ADMIN_PASSWORD"
                );
            }
            Arc::new(Vec::new())
        }
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let mut workers = Vec::new();
    for worker in 0..args.concurrency {
        let (client, base, token, ids) = (client.clone(), base.clone(), token.clone(), ids.clone());
        let scenario = args.scenario;
        let prefix = format!("bench-{}-{worker}", run_id.get(..8).unwrap_or("run"));
        workers.push(tokio::spawn(async move {
            let mut stats = WorkerStats {
                latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?,
                statuses: BTreeMap::new(),
            };
            let mut n: usize = 0;
            while Instant::now() < deadline {
                let request = match scenario {
                    Scenario::CatalogRead => read_request(&client, &base, &ids, worker + n),
                    Scenario::ProductWrite => client
                        .post(format!("{base}/api/catalog/products"))
                        .bearer_auth(token.as_deref().unwrap_or_default())
                        .json(&product(&format!("{prefix}-{n}"))),
                };
                let sent = Instant::now();
                let status = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // The latency includes the whole body, as a client experiences it.
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                stats.latency_us.saturating_record(micros);
                *stats.statuses.entry(status).or_default() += 1;
                n += 1;
            }
            Ok::<WorkerStats, hdrhistogram::CreationError>(stats)
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for worker in workers {
        let stats = worker.await.context("a bench worker panicked")??;
        latency.add(&stats.latency_us)?;
        for (status, count) in stats.statuses {
            *statuses.entry(status).or_default() += count;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total: u64 = statuses.values().sum();
    let ok: u64 = statuses
        .iter()
        .filter(|(status, _)| (200..300).contains(*status))
        .map(|(_, count)| count)
        .sum();
    let ms = |micros: u64| micros as f64 / 1000.0;
    println!(
        "scenario {:?}, concurrency {}, {elapsed:.1} s: {total} requests, {ok} ok, {:.0} requests/s ({:.0} ok/s)",
        args.scenario,
        args.concurrency,
        total as f64 / elapsed,
        ok as f64 / elapsed
    );
    println!(
        "latency ms: p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.9)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.max())
    );
    let answers: Vec<String> = statuses
        .iter()
        .map(|(status, count)| match status {
            0 => format!("transport error: {count}"),
            status => format!("{status}: {count}"),
        })
        .collect();
    println!("answers: {}", answers.join(", "));
    if statuses.contains_key(&429) {
        eprintln!(
            "warning: the gateway rate-limited the bench (429); start the node with a higher COMMERCE_RATE_LIMIT_PER_MINUTE"
        );
    }
    Ok(())
}

fn read_request(
    client: &reqwest::Client,
    base: &str,
    ids: &[String],
    n: usize,
) -> reqwest::RequestBuilder {
    match ids.get(n % ids.len().max(1)) {
        Some(id) if n % 2 == 1 => client.get(format!("{base}/api/catalog/products/{id}")),
        _ => client.get(format!(
            "{base}/api/catalog/products?page={}&page_size=20",
            n % 5 + 1
        )),
    }
}

fn product(sku: &str) -> Value {
    json!({
        "sku": sku,
        "name": format!("Bench product {sku}"),
        "description": "written by commerce bench http",
        "category": "bench",
        "price": {"amount": 1999, "currency": "USD"},
        "weight_grams": 250,
    })
}

pub(super) async fn login(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/api/identity/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match body.get("access_token").and_then(Value::as_str) {
        Some(token) if status.is_success() => Ok(token.to_string()),
        _ => bail!("login as {email} failed: {status} {body}"),
    }
}

/// Product ids to read; seeds the catalog first when it is small and an admin is given.
async fn prepare_reads(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let mut ids = list_ids(client, base).await?;
    if let Some(token) = token
        && ids.len() < SEED_PRODUCTS
    {
        let seed = uuid::Uuid::new_v4().simple().to_string();
        for n in ids.len()..SEED_PRODUCTS {
            let sku = format!("seed-{}-{n}", seed.get(..8).unwrap_or("seed"));
            let response = client
                .post(format!("{base}/api/catalog/products"))
                .bearer_auth(token)
                .json(&product(&sku))
                .send()
                .await
                .context("cannot seed the catalog")?;
            if !response.status().is_success() {
                bail!("seeding the catalog failed: {}", response.status());
            }
        }
        ids = list_ids(client, base).await?;
    }
    Ok(ids)
}

async fn list_ids(client: &reqwest::Client, base: &str) -> anyhow::Result<Vec<String>> {
    let response = client
        .get(format!("{base}/api/catalog/products?page_size=100"))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    if !response.status().is_success() {
        bail!("listing products failed: {}", response.status());
    }
    let body: Value = response.json().await.context("a product page is JSON")?;
    Ok(body
        .get("items")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.get("id").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}
