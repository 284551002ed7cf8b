//! Identity over HTTP with a real client: sign-up, login, tokens, sessions, roles, and the
//! events it publishes on `identity-events`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use base64::Engine as _;
use commerce_tests::http::{
    ADMIN_EMAIL, ADMIN_ENV, ADMIN_PASSWORD, Api, wait_for_event, wait_for_events,
};
use commerce_tests::{Node, TimeLimit, cli};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

#[test]
fn register_login_me_refresh_logout() {
    let _limit = TimeLimit::new("register_login_me_refresh_logout", Duration::from_secs(120));
    let node = Node::start();
    let api = Api::new(&node);

    let user = api.register("Alice@Example.com", "correct horse", "Alice");
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["name"], "Alice");
    assert_eq!(user["roles"], json!(["customer"]));
    let user_id = user["id"].as_str().unwrap().to_string();

    // A taken email is answered like a new one (account_security.rs checks that nothing is
    // created); bad input is refused with a field, and nothing is created.
    let taken = api.post(
        "/api/identity/register",
        None,
        &json!({"email": "alice@example.com", "password": "another pass", "name": "Eve"}),
    );
    assert_eq!(taken.status, 201);
    assert_ne!(taken.body["id"], user_id.as_str());
    let bad_email = api.post(
        "/api/identity/register",
        None,
        &json!({"email": "not-an-email", "password": "long enough", "name": "X"}),
    );
    assert_eq!(
        (bad_email.status, bad_email.body["error"]["field"].as_str()),
        (400, Some("email"))
    );
    let short = api.post(
        "/api/identity/register",
        None,
        &json!({"email": "x@example.com", "password": "short", "name": "X"}),
    );
    assert_eq!(
        (short.status, short.body["error"]["field"].as_str()),
        (400, Some("password"))
    );
    let not_json = api.send(
        api.request(reqwest::Method::POST, "/api/identity/register", None)
            .header("content-type", "application/json")
            .body("{not json"),
    );
    assert_eq!(
        (not_json.status, not_json.error_code()),
        (400, "invalid_body")
    );
    let wrong = api.post(
        "/api/identity/login",
        None,
        &json!({"email": "x@example.com", "password": "long enough"}),
    );
    assert_eq!(
        (wrong.status, wrong.error_code()),
        (401, "invalid_credentials")
    );

    let wrong_password = api.post(
        "/api/identity/login",
        None,
        &json!({"email": "alice@example.com", "password": "wrong horse"}),
    );
    assert_eq!(wrong_password.status, 401);

    let tokens = api.login("alice@example.com", "correct horse");
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].as_i64().unwrap() > 0);
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();

    let me = api.get("/api/identity/me", Some(access)).expect(200);
    assert_eq!(me.body["id"], user_id.as_str());
    assert_eq!(me.body["email"], "alice@example.com");
    assert_eq!(api.get("/api/identity/me", None).status, 401);

    // Refresh rotates: the new refresh token works, the used one does not.
    let rotated = api
        .post(
            "/api/identity/refresh",
            None,
            &json!({"refresh_token": refresh}),
        )
        .expect(200)
        .body;
    let access2 = rotated["access_token"].as_str().unwrap();
    let refresh2 = rotated["refresh_token"].as_str().unwrap();
    assert_ne!(refresh2, refresh);
    let reused = api.post(
        "/api/identity/refresh",
        None,
        &json!({"refresh_token": refresh}),
    );
    assert_eq!(
        (reused.status, reused.error_code()),
        (401, "invalid_refresh_token")
    );
    // A used refresh token coming back means it leaked: the whole session is revoked, the
    // latest refresh token and its access token included.
    let family = api.post(
        "/api/identity/refresh",
        None,
        &json!({"refresh_token": refresh2}),
    );
    assert_eq!(family.status, 401);
    let revoked = api.get("/api/identity/me", Some(access2));
    assert_eq!(
        (revoked.status, revoked.error_code()),
        (401, "invalid_token")
    );

    // Logout revokes the session: its refresh token and its access token stop working.
    let session = api.login("alice@example.com", "correct horse");
    let access3 = session["access_token"].as_str().unwrap();
    let refresh3 = session["refresh_token"].as_str().unwrap();
    api.get("/api/identity/me", Some(access3)).expect(200);
    api.post("/api/identity/logout", Some(access3), &json!({}))
        .expect(204);
    let after_logout = api.post(
        "/api/identity/refresh",
        None,
        &json!({"refresh_token": refresh3}),
    );
    assert_eq!(after_logout.status, 401);
    let ended = api.get("/api/identity/me", Some(access3));
    assert_eq!((ended.status, ended.error_code()), (401, "invalid_token"));

    // Change password: the old one stops working, the new one works, and other sessions end
    // while the one that changed it goes on.
    let other_device = api.token("alice@example.com", "correct horse");
    let fresh = api.token("alice@example.com", "correct horse");
    let bad_current = api.post(
        "/api/identity/password",
        Some(&fresh),
        &json!({"current_password": "nope nope", "new_password": "battery staple"}),
    );
    assert_eq!(bad_current.status, 401);
    api.post(
        "/api/identity/password",
        Some(&fresh),
        &json!({"current_password": "correct horse", "new_password": "battery staple"}),
    )
    .expect(204);
    assert_eq!(
        api.post(
            "/api/identity/login",
            None,
            &json!({"email": "alice@example.com", "password": "correct horse"})
        )
        .status,
        401
    );
    api.login("alice@example.com", "battery staple");
    api.get("/api/identity/me", Some(&fresh)).expect(200);
    assert_eq!(api.get("/api/identity/me", Some(&other_device)).status, 401);

    let events = wait_for_events(&node, "identity-events", "Alice's nine events", |all| {
        all.iter()
            .filter(|event| event["aggregate_id"] == user_id.as_str())
            .count()
            >= 9
    });
    let of_alice: Vec<&Value> = events
        .iter()
        .filter(|event| event["aggregate_id"] == user_id.as_str())
        .collect();
    let types: Vec<&str> = of_alice
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "UserRegistered",
            "RegistrationAttempted",
            "UserLoggedIn",
            "RefreshTokenReused",
            "UserLoggedIn",
            "UserLoggedIn",
            "UserLoggedIn",
            "PasswordChanged",
            "UserLoggedIn"
        ]
    );
    let registered = of_alice[0];
    assert_eq!(registered["data"]["email"], "alice@example.com");
    assert_eq!(registered["version"], 1);
    for field in ["id", "occurred_at", "correlation_id"] {
        assert!(
            registered[field]
                .as_str()
                .is_some_and(|text| !text.is_empty()),
            "{field}"
        );
    }
    assert!(
        !events
            .iter()
            .any(|event| event.to_string().contains("password_hash")),
        "no event carries a password hash"
    );
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn bad_tokens_get_401_and_customers_get_403_on_admin_routes() {
    let _limit = TimeLimit::new("bad_tokens_get_401", Duration::from_secs(120));
    let node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let user = api.register("bob@example.com", "bobs password", "Bob");
    let token = api.token("bob@example.com", "bobs password");
    api.get("/api/identity/me", Some(&token)).expect(200);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // A real session id, so that only what each forgery changes is wrong with it.
    let real: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let claims = |exp: i64, roles: Value| {
        json!({"sub": user["id"], "sid": real["sid"], "roles": roles, "iss": "commerce-identity",
               "iat": now - 7200, "exp": exp})
    };

    // Signed with the node's own key (read from its data directory) but expired.
    let der = std::fs::read(
        node.data_dir()
            .join("services/identity-keys/jwt-ed25519.der"),
    )
    .expect("the node keeps its signing key in the data directory");
    let node_key = EncodingKey::from_ed_der(&der);
    let header = Header::new(Algorithm::EdDSA);
    let expired =
        jsonwebtoken::encode(&header, &claims(now - 3600, json!(["customer"])), &node_key).unwrap();
    // The same key and valid times, as a control: the forgery tooling itself is sound.
    let valid =
        jsonwebtoken::encode(&header, &claims(now + 600, json!(["customer"])), &node_key).unwrap();
    api.get("/api/identity/me", Some(&valid)).expect(200);

    // Tampered: a valid customer token whose payload now claims admin.
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    payload["roles"] = json!(["admin"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(payload.to_string().as_bytes()),
        parts[2]
    );

    // alg none, unsigned.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims(now + 600, json!(["admin"])).to_string().as_bytes())
    );

    // A well-formed EdDSA token from another key.
    let mut other = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    other.extend_from_slice(&[7u8; 32]);
    let wrong_key = jsonwebtoken::encode(
        &header,
        &claims(now + 600, json!(["admin"])),
        &EncodingKey::from_ed_der(&other),
    )
    .unwrap();

    // HS256 signed with the public key bytes (the classic algorithm-confusion forgery).
    let jwks = api.get("/.well-known/jwks.json", None).expect(200).body;
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    let public = jwks["keys"][0]["x"].as_str().unwrap().to_string();
    let hmac = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(now + 600, json!(["admin"])),
        &EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();

    for (name, bad) in [
        ("expired", expired.as_str()),
        ("tampered", tampered.as_str()),
        ("alg none", none.as_str()),
        ("wrong key", wrong_key.as_str()),
        ("hmac confusion", hmac.as_str()),
        ("garbage", "not.a.token"),
    ] {
        let reply = api.get("/api/identity/me", Some(bad));
        assert_eq!(
            (reply.status, reply.error_code()),
            (401, "invalid_token"),
            "{name} token"
        );
        // A bad token is refused even on a public route: the client must know its token is bad.
        assert_eq!(
            api.get("/api/catalog/products", Some(bad)).status,
            401,
            "{name} token"
        );
    }
    let basic = api.send(
        api.request(reqwest::Method::GET, "/api/identity/me", None)
            .basic_auth("a", Some("b")),
    );
    assert_eq!(basic.status, 401);

    // Roles: a customer on an admin route is 403, no token is 401, an admin gets through.
    let forbidden = api.get("/api/identity/users", Some(&token));
    assert_eq!(
        (forbidden.status, forbidden.error_code()),
        (403, "forbidden")
    );
    assert_eq!(api.get("/api/identity/users", None).status, 401);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let users = api
        .get("/api/identity/users", Some(&admin))
        .expect(200)
        .body;
    assert_eq!(users.as_array().unwrap().len(), 2);

    // An admin grants a role; the user's next login carries it.
    let path = format!("/api/identity/users/{}/roles", user["id"].as_str().unwrap());
    let bad_role = api.put(&path, Some(&admin), &json!({"roles": ["wizard"]}));
    assert_eq!(
        (bad_role.status, bad_role.body["error"]["field"].as_str()),
        (400, Some("roles"))
    );
    api.put(
        &path,
        Some(&admin),
        &json!({"roles": ["customer", "admin"]}),
    )
    .expect(200);
    let promoted = api.token("bob@example.com", "bobs password");
    api.get("/api/identity/users", Some(&promoted)).expect(200);
}

#[test]
fn admins_come_from_the_environment_and_from_user_create() {
    let _limit = TimeLimit::new("admins_come_from_env_and_cli", Duration::from_secs(120));
    let mut node = Node::start_with_env(&ADMIN_ENV);
    let api = Api::new(&node);
    let admin = api.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let me = api.get("/api/identity/me", Some(&admin)).expect(200);
    assert_eq!(me.body["roles"], json!(["admin"]));

    // `commerce user create --admin` refuses a running node's data directory (the store is
    // locked) and works once it is stopped.
    let data_dir = node.data_dir();
    let busy = cli::run(
        &[
            "user",
            "create",
            "--admin",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--email",
            "ops@example.com",
            "--password",
            "ops password",
        ],
        b"",
        Duration::from_secs(60),
    );
    assert!(
        !busy.status.success(),
        "user create must not write under a running node"
    );
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("stop it first"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    assert!(node.terminate().success());
    let output = cli::run_ok(
        &[
            "user",
            "create",
            "--admin",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--email",
            "ops@example.com",
            "--password",
            "ops password",
        ],
        b"",
        Duration::from_secs(60),
    );
    assert!(output.contains("ops@example.com"), "{output}");
    node.restart();
    let ops = api.token("ops@example.com", "ops password");
    let me = api.get("/api/identity/me", Some(&ops)).expect(200);
    assert_eq!(me.body["roles"], json!(["admin"]));
    // The env admin was not created twice, and the CLI-made account's event was published
    // by the restarted node.
    let users = api.get("/api/identity/users", Some(&ops)).expect(200).body;
    assert_eq!(users.as_array().unwrap().len(), 2);
    let events = wait_for_event(&node, "identity-events", "UserRegistered of ops", |event| {
        event["type"] == "UserRegistered" && event["data"]["email"] == "ops@example.com"
    });
    assert_eq!(
        events
            .iter()
            .filter(|event| event["type"] == "UserRegistered")
            .count(),
        2
    );
}
