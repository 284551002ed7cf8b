//! Accounts as an attacker would try them (issue 15): a registration does not tell which
//! emails have accounts, weak passwords are refused, guessing a password locks the account
//! for a while (even against the right password), a stolen refresh token used after its
//! owner revokes the whole session, and the customer hears of an order that was cancelled.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use commerce_tests::http::Api;
use commerce_tests::orders::{self, DECLINED_CARD};
use commerce_tests::{TimeLimit, wait_for};
use serde_json::{Value, json};

/// The caller's notifications from `template`, once one is there.
fn notified(api: &Api, token: &str, template: &str) -> Value {
    wait_for(
        &format!("a {template} notification"),
        Duration::from_secs(60),
        || {
            api.get("/api/notifications", Some(token)).expect(200).body["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|item| item["template"] == template)
                .cloned()
        },
    )
}

fn login(api: &Api, email: &str, password: &str) -> commerce_tests::http::Reply {
    api.post(
        "/api/identity/login",
        None,
        &json!({"email": email, "password": password}),
    )
}

#[test]
fn accounts_resist_enumeration_weak_passwords_guessing_and_stolen_tokens() {
    let _limit = TimeLimit::new(
        "accounts_resist_enumeration_weak_passwords_guessing_and_stolen_tokens",
        Duration::from_secs(180),
    );
    let node = orders::start("5000");
    let api = Api::new(&node);
    let first = api.register("grace@example.com", "first password", "Grace");

    // Registering a taken email answers as a new account would, creates nothing (the
    // second password does not sign in, the first still does), and tells the owner.
    let again = api.post(
        "/api/identity/register",
        None,
        &json!({"email": "grace@example.com", "password": "second password", "name": "Mallory"}),
    );
    assert_eq!(again.status, 201, "{:?}", again.body);
    assert_eq!(again.body["email"], "grace@example.com");
    assert_eq!(again.body["name"], "Mallory");
    assert_eq!(again.body["roles"], json!(["customer"]));
    assert_ne!(again.body["id"], first["id"]);
    assert_eq!(
        login(&api, "grace@example.com", "second password").status,
        401
    );
    let owner = api.token("grace@example.com", "first password");
    let notice = notified(&api, &owner, "registration_attempt");
    assert!(
        notice.to_string().contains("grace@example.com"),
        "the notice names the email: {notice}"
    );

    // Blank, repeated and common passwords are refused, on sign-up and on change.
    for weak in [
        "        ",
        "password",
        "Password123",
        "qwertyuiop",
        "zzzzzzzzzz",
    ] {
        let refused = api.post(
            "/api/identity/register",
            None,
            &json!({"email": "weak@example.com", "password": weak, "name": "Weak"}),
        );
        assert_eq!(
            (refused.status, refused.body["error"]["field"].as_str()),
            (400, Some("password")),
            "{weak:?} was not refused: {:?}",
            refused.body
        );
    }
    let change = api.post(
        "/api/identity/password",
        Some(&owner),
        &json!({"current_password": "first password", "new_password": "12345678"}),
    );
    assert_eq!(change.status, 400);
    assert_eq!(
        login(&api, "weak@example.com", "        ").status,
        401,
        "no account was created by a refused registration"
    );

    // Five wrong passwords in a row, and the account refuses sign-ins for a while, the
    // right password too, saying when to come back; once that is over, it signs in.
    for _ in 0..5 {
        assert_eq!(login(&api, "grace@example.com", "guess guess").status, 401);
    }
    let locked = login(&api, "grace@example.com", "first password");
    assert_eq!(
        (locked.status, locked.error_code()),
        (429, "too_many_attempts"),
        "{:?}",
        locked.body
    );
    let retry_after: u64 = locked
        .header("retry-after")
        .expect("a Retry-After header")
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after));
    std::thread::sleep(Duration::from_secs(retry_after + 1));
    let tokens = login(&api, "grace@example.com", "first password")
        .expect(200)
        .body;

    // A refresh token exchanged already and presented again (stolen, or replayed) ends the
    // session: the latest refresh token and its access token stop working too, and the
    // owner is told.
    let stolen = tokens["refresh_token"].as_str().unwrap().to_string();
    let rotated = api
        .post(
            "/api/identity/refresh",
            None,
            &json!({"refresh_token": stolen}),
        )
        .expect(200)
        .body;
    let latest_access = rotated["access_token"].as_str().unwrap();
    let latest_refresh = rotated["refresh_token"].as_str().unwrap();
    api.get("/api/identity/me", Some(latest_access)).expect(200);
    let replay = api.post(
        "/api/identity/refresh",
        None,
        &json!({"refresh_token": stolen}),
    );
    assert_eq!(
        (replay.status, replay.error_code()),
        (401, "invalid_refresh_token")
    );
    let latest = api.post(
        "/api/identity/refresh",
        None,
        &json!({"refresh_token": latest_refresh}),
    );
    assert_eq!(latest.status, 401, "the whole session is revoked");
    assert_eq!(api.get("/api/identity/me", Some(latest_access)).status, 401);
    let fresh = api.token("grace@example.com", "first password");
    notified(&api, &fresh, "refresh_token_reused");
}

#[test]
fn a_declined_order_notifies_its_customer_of_the_cancellation() {
    let _limit = TimeLimit::new(
        "a_declined_order_notifies_its_customer_of_the_cancellation",
        Duration::from_secs(120),
    );
    let node = orders::start("5000");
    let api = Api::new(&node);
    let product = orders::create_product(&api, "MUG-DECLINED");
    let (_, token) = orders::customer(&api, "decline@example.com");
    let admin = api.token(
        commerce_tests::http::ADMIN_EMAIL,
        commerce_tests::http::ADMIN_PASSWORD,
    );
    api.put(
        &format!("/api/inventory/{product}"),
        Some(&admin),
        &json!({"available": 10}),
    )
    .expect(200);
    let id = orders::place(
        &api,
        &token,
        &orders::order_body(&product, 1, DECLINED_CARD),
    );
    orders::wait_for_status(&api, &token, &id, "cancelled");
    let notice = notified(&api, &token, "order_cancelled");
    assert!(
        notice.to_string().contains(&id),
        "the notice names the order: {notice}"
    );
}
