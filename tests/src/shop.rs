//! A shop on a three-node cluster under load, for fault tests of the services: products with
//! bounded stock, customers placing orders through every node (each order retried with its
//! `Idempotency-Key` on the next node while one is down) while a test injects faults, and
//! the invariants that must hold once the faults are repaired ([`Shop::check`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::http::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, Reply, events, product};
use crate::orders::{DECLINED_CARD, GOOD_CARD, order_body};
use crate::wait_for;

/// Every node's environment: the test admin and no rate limit in the way.
pub const SHOP_ENV: [(&str, &str); 3] = [
    ("COMMERCE_ADMIN_EMAIL", ADMIN_EMAIL),
    ("COMMERCE_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ("COMMERCE_RATE_LIMIT_PER_MINUTE", "1000000"),
];

/// How long a client keeps retrying one order under its key before it moves on (the order
/// may then exist unanswered: the checks read every order, not only the answered ones).
const RETRY_FOR: Duration = Duration::from_secs(30);
/// How long the orders, and what follows from them, may take to settle after the faults.
const SETTLE: Duration = Duration::from_secs(180);
/// Topics whose records are event envelopes with unique ids.
const EVENT_TOPICS: [&str; 7] = [
    "order-events",
    "payment-events",
    "inventory-events",
    "shipping-events",
    "payment-commands",
    "inventory-commands",
    "shipping-commands",
];

#[derive(Clone)]
struct Stocked {
    id: String,
    stock: i64,
}

#[derive(Clone)]
struct Customer {
    id: String,
    token: String,
}

/// The shop's products and customers, and each node's API.
pub struct Shop {
    apis: BTreeMap<u64, Api>,
    admin: String,
    products: Vec<Stocked>,
    customers: Vec<Customer>,
}

/// The orders customers are placing, one thread per customer.
pub struct OrderLoad {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    clients: Vec<JoinHandle<ClientLog>>,
}

/// What one client saw: the orders answered 202, and answers no retry explains.
#[derive(Default)]
pub struct ClientLog {
    pub accepted: Vec<String>,
    pub unexpected: Vec<String>,
    pub abandoned: usize,
}

/// What [`Shop::check`] counted, for the test's report.
#[derive(Debug)]
pub struct Totals {
    pub orders: usize,
    pub confirmed: usize,
    pub cancelled: usize,
    pub charges: usize,
    /// Why orders were cancelled, and how many.
    pub cancelled_because: BTreeMap<String, usize>,
}

impl Shop {
    /// Opens a shop on a formed cluster whose nodes run with [`SHOP_ENV`]: `products`
    /// products of `stock` units each, `customers` customers, spread over the nodes.
    pub fn open(cluster: &mut Cluster, products: usize, stock: i64, customers: usize) -> Shop {
        let apis: BTreeMap<u64, Api> = cluster
            .ids()
            .into_iter()
            .map(|id| (id, Api::new(cluster.node(id))))
            .collect();
        for (id, api) in &apis {
            wait_for(&format!("node {id} ready"), SETTLE, || {
                (api.get("/health/ready", None).status == 200).then_some(())
            });
        }
        let nodes: Vec<&Api> = apis.values().collect();
        let admin = nodes[0].token(ADMIN_EMAIL, ADMIN_PASSWORD);
        let products = (0..products)
            .map(|n| {
                let api = nodes[n % nodes.len()];
                let sku = format!("SHOP-{n}");
                let created = api
                    .post(
                        "/api/catalog/products",
                        Some(&admin),
                        &product(&sku, &format!("Item {n}"), "shop", 1000 + 100 * n as i64),
                    )
                    .expect(201);
                let id = created.body["id"]
                    .as_str()
                    .expect("a product id")
                    .to_string();
                api.put(
                    &format!("/api/inventory/{id}"),
                    Some(&admin),
                    &json!({"available": stock}),
                )
                .expect(200);
                Stocked { id, stock }
            })
            .collect();
        let customers = (0..customers)
            .map(|n| {
                let api = nodes[n % nodes.len()];
                let email = format!("shopper{n}@example.com");
                let user = api.register(&email, "customer-password-1", &format!("Shopper {n}"));
                let token = nodes[(n + 1) % nodes.len()].token(&email, "customer-password-1");
                Customer {
                    id: user["id"].as_str().expect("a user id").to_string(),
                    token,
                }
            })
            .collect();
        Shop {
            apis,
            admin,
            products,
            customers,
        }
    }

    /// Starts one client per customer, each placing orders until [`OrderLoad::finish`].
    pub fn start_orders(&self) -> OrderLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let clients = self
            .customers
            .iter()
            .enumerate()
            .map(|(number, customer)| {
                let client = Client {
                    number,
                    token: customer.token.clone(),
                    nodes: self.apis.values().cloned().collect(),
                    products: self.products.iter().map(|p| p.id.clone()).collect(),
                    stop: stop.clone(),
                    accepted: accepted.clone(),
                };
                std::thread::spawn(move || client.run())
            })
            .collect();
        OrderLoad {
            stop,
            accepted,
            clients,
        }
    }

    /// Checks, once faults are over and orders stopped, what must hold after any schedule:
    /// - every order answered 202 exists, and every order reaches a final status;
    /// - every node answers every order the same (the whole view, saga timeline included);
    /// - no order was charged twice, a confirmed one exactly once for its total, and a
    ///   cancelled one that was charged was refunded in full;
    /// - stock: available + reserved is what was stocked, and what is reserved is what the
    ///   confirmed orders hold;
    /// - each customer's notifications match their confirmed and charged orders;
    /// - the analytics totals match the orders;
    /// - every event or command on the topics appears once per event id, and each order
    ///   has exactly one final event.
    pub fn check(&self, cluster: &mut Cluster, logs: &[ClientLog]) -> Totals {
        for (id, api) in &self.apis {
            wait_for(&format!("node {id} ready after the faults"), SETTLE, || {
                api.try_send(api.request(reqwest::Method::GET, "/health/ready", None))
                    .ok()
                    .filter(|reply| reply.status == 200)
            });
        }
        let unexpected: Vec<&String> = logs.iter().flat_map(|log| &log.unexpected).collect();
        assert!(unexpected.is_empty(), "unexpected answers: {unexpected:#?}");

        let first = self.apis.values().next().expect("a node");
        let orders = wait_for("every order final", SETTLE, || {
            let orders = self.all_orders(first);
            orders
                .values()
                .all(|order| order["status"] != "pending")
                .then_some(orders)
        });
        for log in logs {
            for id in &log.accepted {
                assert!(
                    orders.contains_key(id),
                    "order {id} was answered 202 but is gone"
                );
            }
        }
        for (node, api) in &self.apis {
            let seen = self.all_orders(api);
            assert_eq!(
                seen.len(),
                orders.len(),
                "node {node} has another set of orders"
            );
            for (id, order) in &orders {
                assert_eq!(
                    seen.get(id),
                    Some(order),
                    "node {node} answers order {id} differently"
                );
            }
        }

        let mut totals = Totals {
            orders: orders.len(),
            confirmed: 0,
            cancelled: 0,
            charges: 0,
            cancelled_because: BTreeMap::new(),
        };
        let mut reserved: BTreeMap<String, i64> = BTreeMap::new();
        let mut per_customer: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut revenue = 0;
        let mut to_refund = Vec::new();
        for (id, order) in &orders {
            let status = order["status"].as_str().unwrap_or_default();
            let total = order["total"]["amount"].as_i64().expect("an order total");
            let charges = self.charges(first, id);
            assert!(
                charges.len() <= 1,
                "order {id} charged {} times: {charges:#?}",
                charges.len()
            );
            let counts = per_customer
                .entry(
                    order["customer_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
                .or_default();
            counts.1 += charges.len();
            totals.charges += charges.len();
            match status {
                "confirmed" => {
                    totals.confirmed += 1;
                    counts.0 += 1;
                    revenue += total;
                    assert_eq!(charges.len(), 1, "confirmed order {id} is not charged once");
                    assert_eq!(
                        charges[0]["amount"]["amount"].as_i64(),
                        Some(total),
                        "order {id}"
                    );
                    for line in order["items"].as_array().expect("order lines") {
                        let product = line["product_id"].as_str().unwrap_or_default();
                        let quantity = line["quantity"].as_i64().unwrap_or_default();
                        *reserved.entry(product.to_string()).or_default() += quantity;
                    }
                }
                "cancelled" => {
                    totals.cancelled += 1;
                    let reason = order["cancel_reason"].as_str().unwrap_or("none");
                    *totals
                        .cancelled_because
                        .entry(reason.to_string())
                        .or_default() += 1;
                    if !charges.is_empty() {
                        to_refund.push(id.clone());
                    }
                }
                other => panic!("order {id} ends {other}: {order:#}"),
            }
        }

        // A cancelled order that was charged is refunded in full (the refund follows the
        // cancellation, so it may still be on its way).
        for id in &to_refund {
            let refunded = wait_for(&format!("the refund of order {id}"), SETTLE, || {
                let charge = self.charges(first, id).into_iter().next()?;
                (charge["refunded"] == charge["amount"]["amount"]).then_some(charge)
            });
            eprintln!("order {id} cancelled, refunded: {refunded}");
        }

        // Stock: what the confirmed orders hold is reserved, the rest available. A cancelled
        // order's release follows its cancellation, so it may still be on its way.
        for product in &self.products {
            let path = format!("/api/inventory/{}", product.id);
            let expected = reserved.get(&product.id).copied().unwrap_or_default();
            let mut last = Value::Null;
            let settled = wait_or_give_up(SETTLE, || {
                last = first.get(&path, None).expect(200).body;
                last["reserved"].as_i64() == Some(expected)
            });
            let available = last["available"].as_i64().unwrap_or(-1);
            let held = last["reserved"].as_i64().unwrap_or(-1);
            assert!(available >= 0, "product {} oversold: {last}", product.id);
            assert_eq!(
                available + held,
                product.stock,
                "product {}: {last}",
                product.id
            );
            assert!(
                settled,
                "product {}: {held} reserved, the confirmed orders hold {expected}",
                product.id
            );
        }

        for customer in &self.customers {
            let (confirmed, charged) = per_customer.get(&customer.id).copied().unwrap_or_default();
            let counted = wait_for("each customer's notifications", SETTLE, || {
                let reply = first.get("/api/notifications", Some(&customer.token));
                let counted = (
                    count_template(&reply.body, "order_confirmed"),
                    count_template(&reply.body, "payment_received"),
                );
                (counted == (confirmed, charged)).then_some(counted)
            });
            assert_eq!(counted, (confirmed, charged), "customer {}", customer.id);
        }

        let expected = (totals.confirmed as u64, totals.cancelled as u64, revenue);
        wait_for("the analytics totals match the orders", SETTLE, || {
            let summary = first
                .get("/api/analytics/summary", Some(&self.admin))
                .expect(200)
                .body;
            let seen = (
                summary["orders_confirmed"].as_u64().unwrap_or_default(),
                summary["orders_cancelled"].as_u64().unwrap_or_default(),
                summary["revenue"]["amount"].as_i64().unwrap_or_default(),
            );
            if seen != expected {
                eprintln!("analytics {seen:?}, orders {expected:?}");
            }
            (seen == expected).then_some(())
        });

        let node = cluster.node(*self.apis.keys().next().expect("a node"));
        for topic in EVENT_TOPICS {
            let mut seen = BTreeSet::new();
            let all = events(node, topic);
            for event in &all {
                let id = event["id"].as_str().unwrap_or_default().to_string();
                assert!(
                    seen.insert(id.clone()),
                    "event {id} twice on {topic}: {event}"
                );
            }
            if topic == "order-events" {
                let mut finals: BTreeMap<&str, usize> = BTreeMap::new();
                for event in &all {
                    if matches!(
                        event["type"].as_str(),
                        Some("OrderConfirmed" | "OrderCancelled")
                    ) {
                        *finals
                            .entry(event["aggregate_id"].as_str().unwrap_or(""))
                            .or_default() += 1;
                    }
                }
                for id in orders.keys() {
                    assert_eq!(
                        finals.get(id.as_str()),
                        Some(&1),
                        "final events of order {id}"
                    );
                }
            }
        }
        totals
    }

    /// Every order, as an admin reads it on `api`, by id.
    fn all_orders(&self, api: &Api) -> BTreeMap<String, Value> {
        let mut orders = BTreeMap::new();
        for page in 1.. {
            let path = format!("/api/orders?all=true&page={page}&page_size=100");
            let reply = api.get(&path, Some(&self.admin)).expect(200);
            let items = reply.body["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                break;
            }
            for order in items {
                let id = order["id"].as_str().unwrap_or_default().to_string();
                orders.insert(id, order);
            }
        }
        orders
    }

    /// The payment provider's charges for an order.
    fn charges(&self, api: &Api, order_id: &str) -> Vec<Value> {
        let path = format!("/api/payments/provider/charges?order_id={order_id}");
        let reply = api.get(&path, Some(&self.admin)).expect(200);
        reply.body["items"].as_array().cloned().unwrap_or_default()
    }
}

/// Polls `done` until it holds (true) or `limit` passes (false).
fn wait_or_give_up(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done()
}

fn count_template(notifications: &Value, template: &str) -> usize {
    notifications["items"]
        .as_array()
        .map(|items| items.iter().filter(|n| n["template"] == template).count())
        .unwrap_or_default()
}

impl OrderLoad {
    /// Orders answered 202 so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Waits until `more` further orders were answered 202 (the shop takes orders).
    pub fn wait_accepted(&self, more: usize, what: &str) {
        let target = self.accepted() + more;
        wait_for(what, SETTLE, || (self.accepted() >= target).then_some(()));
    }

    /// Stops the clients once their current order is answered; what each saw.
    pub fn finish(self) -> Vec<ClientLog> {
        self.stop.store(true, Ordering::Relaxed);
        self.clients
            .into_iter()
            .map(|client| client.join().expect("a client thread panicked"))
            .collect()
    }
}

/// One customer placing orders one after another, each on the next node.
struct Client {
    number: usize,
    token: String,
    nodes: Vec<Api>,
    products: Vec<String>,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
}

impl Client {
    fn run(self) -> ClientLog {
        let mut log = ClientLog::default();
        let mut sequence = 0usize;
        while !self.stop.load(Ordering::Relaxed) {
            sequence += 1;
            // Every fifth card is declined; quantities of 1 and 2 run the stock out.
            let card = if sequence.is_multiple_of(5) {
                DECLINED_CARD
            } else {
                GOOD_CARD
            };
            let product = &self.products[(self.number + sequence) % self.products.len()];
            let body = order_body(product, 1 + (sequence % 2) as i64, card);
            let key = format!("shopper{}-order{sequence}", self.number);
            self.place(&key, &body, self.number + sequence, &mut log);
        }
        log
    }

    /// Places one order, retrying under `key` on the next node while the answer is a node
    /// that is down, electing, or still running the first attempt.
    fn place(&self, key: &str, body: &Value, first_node: usize, log: &mut ClientLog) {
        let started = Instant::now();
        let mut node = first_node;
        while started.elapsed() < RETRY_FOR {
            let api = &self.nodes[node % self.nodes.len()];
            let request = api
                .request(reqwest::Method::POST, "/api/orders", Some(&self.token))
                .header("Idempotency-Key", key)
                .timeout(Duration::from_secs(10))
                .json(body);
            match api.try_send(request) {
                Ok(reply) if reply.status == 202 => {
                    let id = reply.body["id"].as_str().unwrap_or_default().to_string();
                    log.accepted.push(id);
                    self.accepted.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(reply) if retryable(&reply) => {}
                Ok(reply) => {
                    log.unexpected
                        .push(format!("{key}: {} {}", reply.status, reply.text));
                    return;
                }
                Err(_) => {}
            }
            node += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        log.abandoned += 1;
    }
}

/// An answer a client retries: the node cannot serve now (503, a 504 from a forward that
/// timed out), or the first attempt under the key is still running (409).
fn retryable(reply: &Reply) -> bool {
    matches!(reply.status, 503 | 504)
        || (reply.status == 409 && reply.error_code() == "idempotency_key_in_flight")
}

/// The Raft group id of a service's command log (`cli/src/services/mod.rs`: base 2^48, then
/// the services in this order).
pub fn service_group(service: &str) -> u64 {
    const SERVICES: [&str; 8] = [
        "identity",
        "catalog",
        "inventory",
        "payment",
        "shipping",
        "notification",
        "analytics",
        "order",
    ];
    let index = SERVICES
        .iter()
        .position(|known| *known == service)
        .unwrap_or_else(|| panic!("no service {service}"));
    (1 << 48) + index as u64 + 1
}

/// The leader of `service`'s group once every node in `ids` names one, and the same one.
pub fn service_leader(cluster: &Cluster, ids: &[u64], service: &str) -> u64 {
    let group = service_group(service);
    let leader_in = |status: &Value| {
        status["groups"]
            .as_array()?
            .iter()
            .find(|g| g["group"] == group)?["leader"]
            .as_u64()
    };
    let statuses = cluster.wait_until(
        &format!("the {service} group has one leader"),
        ids,
        SETTLE,
        |statuses| {
            let leaders: BTreeSet<Option<u64>> = statuses
                .iter()
                .map(|(_, status)| status.as_ref().and_then(leader_in))
                .collect();
            leaders.len() == 1 && !leaders.contains(&None)
        },
    );
    statuses
        .iter()
        .find_map(|(_, status)| status.as_ref().and_then(leader_in))
        .expect("a leader")
}
