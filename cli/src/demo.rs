//! `commerce demo`: the whole order flow in one command, through the public HTTP API only.
//!
//! It seeds a few products and their stock, registers a customer and places three orders: one
//! with a good card (confirmed, then shipped and delivered), one with a declined card
//! (cancelled, stock released) and one for more units than are in stock (cancelled). Then it
//! prints each order's saga steps with their times, the shipment, the customer's
//! notifications and the analytics summary. By default it runs its own node (this binary,
//! `start`, on a temporary data directory and free ports) and stops it at the end; with
//! `--url` it runs against a node that is already up.

// `value["key"]` on a serde_json Value answers Null for a missing key or a non-object; it
// never panics, so the lint's concern does not apply to the JSON reading below.
#![allow(clippy::indexing_slicing)]

use anyhow::{Context, anyhow, bail};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GOOD_CARD: &str = "4242424242424242";
const DECLINED_CARD: &str = "4000000000000002";
const FINAL: &[&str] = &["confirmed", "cancelled", "completed"];

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Run against this node (e.g. http://127.0.0.1:8080) instead of starting one.
    #[arg(long, requires_all = ["admin_email", "admin_password"])]
    url: Option<String>,
    /// An admin of the node given with --url.
    #[arg(long)]
    admin_email: Option<String>,
    #[arg(long, hide_env_values = true)]
    admin_password: Option<String>,
    /// How long an order may take to reach a final state.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let bound = Duration::from_secs(args.timeout_secs);
    match (args.url, args.admin_email, args.admin_password) {
        (Some(url), Some(email), Some(password)) => {
            Demo::new(url, bound)?.run(&email, &password).await
        }
        _ => {
            let node = OwnNode::start().await?;
            println!(
                "started a node: {} (data in {})",
                node.url,
                node.dir.display()
            );
            let outcome = Demo::new(node.url.clone(), bound)?
                .run(&node.admin_email, &node.admin_password)
                .await;
            node.stop();
            outcome
        }
    }
}

/// A node this command started, stopped (SIGTERM) and removed at the end.
struct OwnNode {
    child: Option<Child>,
    dir: PathBuf,
    url: String,
    admin_email: String,
    admin_password: String,
}

impl OwnNode {
    async fn start() -> anyhow::Result<OwnNode> {
        let exe = std::env::current_exe().context("cannot find the commerce binary")?;
        let dir = std::env::temp_dir().join(format!("commerce-demo-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let log = std::fs::File::create(dir.join("node.log"))?;
        let http = free_port()?;
        let kafka = free_port()?;
        let admin_email = "demo-admin@example.com".to_string();
        let admin_password = format!("demo-{}", uuid::Uuid::new_v4().simple());
        let child = Command::new(exe)
            .arg("start")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--kafka-addr")
            .arg(format!("127.0.0.1:{kafka}"))
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{http}"))
            .env("COMMERCE_ADMIN_EMAIL", &admin_email)
            .env("COMMERCE_ADMIN_PASSWORD", &admin_password)
            .env("COMMERCE_RATE_LIMIT_PER_MINUTE", "1000000")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start the node")?;
        let mut node = OwnNode {
            child: Some(child),
            dir,
            url: format!("http://127.0.0.1:{http}"),
            admin_email,
            admin_password,
        };
        let client = Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client
                .get(format!("{}/health/ready", node.url))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return Ok(node);
            }
            if let Some(child) = node.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!(
                    "the node exited ({status}) before it was ready; see {}",
                    node.dir.join("node.log").display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the node was not ready within 60 s; see {}",
                    node.dir.join("node.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM (through `kill`, as the binary has no unsafe code for signals), then waits.
    fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        println!("stopped the node");
    }
}

impl Drop for OwnNode {
    fn drop(&mut self) {
        // Only on an early error: `stop` took the child.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

struct Demo {
    client: Client,
    base: String,
    bound: Duration,
    started: Instant,
}

/// One order the demo places, and what it should come to.
struct Planned {
    label: &'static str,
    id: String,
}

impl Demo {
    fn new(base: String, bound: Duration) -> anyhow::Result<Demo> {
        let client = Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Demo {
            client,
            base: base.trim_end_matches('/').to_string(),
            bound,
            started: Instant::now(),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A call that must succeed.
    async fn ok(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, answer) = self.call(method.clone(), path, token, body).await?;
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {answer}");
        }
        Ok(answer)
    }

    fn say(&self, text: impl AsRef<str>) {
        let elapsed = self.started.elapsed().as_secs_f64();
        println!("[{elapsed:6.2}s] {}", text.as_ref());
    }

    async fn run(&self, admin_email: &str, admin_password: &str) -> anyhow::Result<()> {
        let admin = self.login(admin_email, admin_password).await?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let run = run.get(..8).unwrap_or("demo");

        println!("\n== catalog and stock");
        let machine = self
            .product(&admin, run, "ESP", "Espresso machine", 24_900, 5)
            .await?;
        let grinder = self
            .product(&admin, run, "GRD", "Coffee grinder", 8_900, 5)
            .await?;
        let mug = self
            .product(&admin, run, "MUG", "Ceramic mug", 1_200, 2)
            .await?;

        println!("\n== customer");
        let email = format!("customer-{run}@example.com");
        let password = format!("pw-{run}-customer");
        let user = self
            .ok(
                Method::POST,
                "/api/identity/register",
                None,
                Some(json!({"email": email, "password": password, "name": "Dana Demo"})),
            )
            .await?;
        let customer = self.login(&email, &password).await?;
        self.say(format!(
            "registered Dana Demo <{email}> ({})",
            user["id"].as_str().unwrap_or("?")
        ));

        println!("\n== orders");
        let plans = [
            ("good card", vec![(&machine, 1), (&grinder, 1)], GOOD_CARD),
            ("declined card", vec![(&grinder, 1)], DECLINED_CARD),
            ("more mugs than in stock (2)", vec![(&mug, 3)], GOOD_CARD),
        ];
        let mut placed = Vec::new();
        for (label, items, card) in plans {
            let items: Vec<Value> = items
                .iter()
                .map(|(id, quantity)| json!({"product_id": id, "quantity": quantity}))
                .collect();
            let body = json!({
                "items": items,
                "shipping_address": {"name": "Dana Demo", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"},
                "payment": {"card_number": card},
            });
            let answer = self
                .ok(Method::POST, "/api/orders", Some(&customer), Some(body))
                .await?;
            let id = answer["id"]
                .as_str()
                .ok_or_else(|| anyhow!("no order id in {answer}"))?;
            self.say(format!(
                "placed order {id} ({label}, card ending {})",
                card.get(12..).unwrap_or(card)
            ));
            placed.push(Planned {
                label,
                id: id.to_string(),
            });
        }

        let mut finals = Vec::new();
        for order in &placed {
            let seen = self.wait_final(&admin, &order.id).await?;
            finals.push(seen);
        }
        // Ship and deliver what was confirmed, as the carrier would report it.
        for seen in &finals {
            if seen["status"] == "confirmed" {
                let id = seen["id"].as_str().unwrap_or_default();
                for step in ["dispatch", "deliver"] {
                    self.ok(
                        Method::POST,
                        &format!("/api/shipping/orders/{id}/{step}"),
                        Some(&admin),
                        Some(json!({})),
                    )
                    .await?;
                }
                self.say(format!("carrier: order {id} dispatched and delivered"));
            }
        }
        for (order, seen) in placed.iter().zip(&finals) {
            let now = if seen["status"] == "confirmed" {
                self.wait_status(&admin, &order.id, "completed")
                    .await
                    .unwrap_or_else(|_| seen.clone())
            } else {
                seen.clone()
            };
            self.print_order(&admin, order, &now).await?;
        }

        println!("\n== notifications of Dana Demo");
        let notifications = self.notifications(&customer).await?;
        for item in notifications.as_array().into_iter().flatten() {
            println!(
                "  {} {:<5} {:<19} {}",
                item["at"].as_str().unwrap_or(""),
                item["channel"].as_str().unwrap_or(""),
                item["template"].as_str().unwrap_or(""),
                item["subject"].as_str().unwrap_or("")
            );
        }

        println!("\n== analytics summary");
        let summary = self.analytics(&admin, finals.len()).await?;
        println!("{}", serde_json::to_string_pretty(&summary)?);

        let confirmed = finals.iter().filter(|o| o["status"] != "cancelled").count();
        let cancelled = finals.len() - confirmed;
        println!("\ndone: {confirmed} confirmed, {cancelled} cancelled");
        Ok(())
    }

    async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let answer = self
            .ok(
                Method::POST,
                "/api/identity/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await
            .with_context(|| format!("cannot log in as {email}"))?;
        answer["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("login answered no access token"))
    }

    async fn product(
        &self,
        admin: &str,
        run: &str,
        sku: &str,
        name: &str,
        cents: i64,
        stock: u32,
    ) -> anyhow::Result<String> {
        let body = json!({
            "sku": format!("DEMO-{sku}-{run}"), "name": name, "description": format!("{name} (demo)"),
            "category": "coffee", "price": {"amount": cents, "currency": "USD"}, "weight_grams": 800,
        });
        let product = self
            .ok(
                Method::POST,
                "/api/catalog/products",
                Some(admin),
                Some(body),
            )
            .await?;
        let id = product["id"]
            .as_str()
            .ok_or_else(|| anyhow!("no product id"))?
            .to_string();
        self.ok(
            Method::PUT,
            &format!("/api/inventory/{id}"),
            Some(admin),
            Some(json!({"available": stock})),
        )
        .await?;
        self.say(format!(
            "{name}: {}.{:02} USD, {stock} in stock",
            cents / 100,
            cents % 100
        ));
        Ok(id)
    }

    async fn order(&self, token: &str, id: &str) -> anyhow::Result<Value> {
        self.ok(Method::GET, &format!("/api/orders/{id}"), Some(token), None)
            .await
    }

    async fn wait_final(&self, token: &str, id: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + self.bound;
        loop {
            let order = self.order(token, id).await?;
            let status = order["status"].as_str().unwrap_or_default();
            if FINAL.contains(&status) {
                self.say(format!("order {id} is {}", status.to_uppercase()));
                return Ok(order);
            }
            if Instant::now() > deadline {
                bail!(
                    "order {id} did not reach a final state within {:?}; it is {status}: {order}",
                    self.bound
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_status(&self, token: &str, id: &str, wanted: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + self.bound;
        loop {
            let order = self.order(token, id).await?;
            if order["status"] == wanted {
                return Ok(order);
            }
            if Instant::now() > deadline {
                bail!("order {id} did not become {wanted}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn print_order(
        &self,
        admin: &str,
        planned: &Planned,
        order: &Value,
    ) -> anyhow::Result<()> {
        let status = order["status"].as_str().unwrap_or("?").to_uppercase();
        let total = &order["total"];
        println!(
            "\n== order {} ({}): {status}, total {}.{:02} {}",
            planned.id,
            planned.label,
            total["amount"].as_i64().unwrap_or(0) / 100,
            total["amount"].as_i64().unwrap_or(0) % 100,
            total["currency"].as_str().unwrap_or("")
        );
        if let Some(reason) = order["cancel_reason"].as_str() {
            println!("  cancelled because: {reason}");
        }
        for step in order["steps"].as_array().into_iter().flatten() {
            println!(
                "  {}  {:<22} {:<10} {}",
                step["at"].as_str().unwrap_or(""),
                step["name"].as_str().unwrap_or(""),
                step["status"].as_str().unwrap_or(""),
                step["detail"].as_str().unwrap_or("")
            );
        }
        let (code, payment) = self
            .call(
                Method::GET,
                &format!("/api/payments/orders/{}", planned.id),
                Some(admin),
                None,
            )
            .await?;
        if code.is_success() {
            println!(
                "  payment: {} (card ending {}){}",
                payment["status"].as_str().unwrap_or(""),
                payment["card_last4"].as_str().unwrap_or(""),
                payment["failure_reason"]
                    .as_str()
                    .map(|r| format!(", {r}"))
                    .unwrap_or_default()
            );
        }
        let (code, shipment) = self
            .call(
                Method::GET,
                &format!("/api/shipping/orders/{}", planned.id),
                Some(admin),
                None,
            )
            .await?;
        if code.is_success() {
            println!(
                "  shipment: {} tracking {}, cost {}",
                shipment["status"].as_str().unwrap_or(""),
                shipment["tracking_number"].as_str().unwrap_or(""),
                shipment["cost"]
            );
        } else {
            println!("  shipment: none");
        }
        Ok(())
    }

    /// The analytics summary once it counts at least `orders` final orders (it is a read model
    /// fed by events, so it may trail the orders by a moment), or as it is at the bound.
    async fn analytics(&self, admin: &str, orders: usize) -> anyhow::Result<Value> {
        let deadline = Instant::now() + self.bound.min(Duration::from_secs(15));
        loop {
            let summary = self
                .ok(Method::GET, "/api/analytics/summary", Some(admin), None)
                .await?;
            let counted = ["orders_confirmed", "orders_cancelled"]
                .iter()
                .filter_map(|field| summary[*field].as_u64())
                .sum::<u64>();
            if counted >= orders as u64 || Instant::now() > deadline {
                return Ok(summary);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The customer's notifications once the expected ones arrived (or what is there when
    /// the bound is reached: notifications are not part of an order's outcome).
    async fn notifications(&self, token: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + self.bound.min(Duration::from_secs(15));
        loop {
            let answer = self
                .ok(Method::GET, "/api/notifications", Some(token), None)
                .await?;
            let items = answer["items"].clone();
            let has = |template: &str| {
                items
                    .as_array()
                    .is_some_and(|all| all.iter().any(|item| item["template"] == template))
            };
            let complete = [
                "welcome",
                "order_confirmed",
                "payment_received",
                "shipment_delivered",
            ]
            .iter()
            .all(|template| has(template));
            if complete || Instant::now() > deadline {
                return Ok(items);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
