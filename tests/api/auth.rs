//! Access control: every auth case at the WebSocket handshake and on the REST API.

use serde_json::json;

use crate::helpers::{spawn_with, Resources, WsClient};

const ADMIN: &str = "admin-token-123";
const BOAT2: &str = "boat2-token-456";
const SECRET: &str = "jwt-secret-0123456789";
const ORIGIN: &str = "https://ops.example.org";

/// Opens a stream with optional bearer token and Origin; the HTTP status on refusal.
async fn open(
    port: u16,
    path: &str,
    bearer: Option<&str>,
    origin: Option<&str>,
) -> Result<WsClient, u16> {
    let mut req = awc::Client::default().ws(format!("ws://127.0.0.1:{port}{path}"));
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    if let Some(o) = origin {
        req = req.origin(o);
    }
    match req.connect().await {
        Ok((_, framed)) => Ok(WsClient::from_framed(framed)),
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => Err(s.as_u16()),
        Err(e) => panic!("unexpected handshake failure: {e}"),
    }
}

fn jwt(claims: serde_json::Value) -> String {
    seano_gateway::auth::sign_jwt(SECRET.as_bytes(), &claims)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[actix_web::test]
async fn streams_refuse_every_bad_credential_before_the_upgrade() {
    let mut app = spawn_with(Resources::fresh().await, |s| {
        s.auth_tokens = Some(format!("{ADMIN}, {BOAT2}:2"));
        s.auth_jwt_secret = Some(SECRET.into());
        s.allowed_origins = Some(ORIGIN.into());
    })
    .await;
    let p = app.port;
    // Expired past the 60 s leeway allowed for clock skew (AUTH_JWT_LEEWAY_SECS).
    let expired = jwt(json!({"sub": "ops", "exp": now() - 120}));
    let boat2_jwt = jwt(json!({"sub": "boat2", "exp": now() + 600, "vehicles": [2]}));
    let admin_jwt = jwt(json!({"sub": "ops", "exp": now() + 600}));

    // None, wrong, expired: 401.
    assert_eq!(open(p, "/api/ws", None, None).await.err(), Some(401));
    assert_eq!(
        open(p, "/api/ws", Some("wrong-token-000"), None)
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        open(p, "/api/ws?token=wrong-token-000", None, None)
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        open(p, "/api/ws", Some(&expired), None).await.err(),
        Some(401)
    );
    // Another vehicle, or the whole fleet, with a vehicle-scoped token: 403.
    assert_eq!(open(p, "/api/ws", Some(BOAT2), None).await.err(), Some(403));
    assert_eq!(
        open(p, "/api/ws/vehicle/3", Some(BOAT2), None).await.err(),
        Some(403)
    );
    assert_eq!(
        open(p, "/api/ws/vehicle/3", Some(&boat2_jwt), None)
            .await
            .err(),
        Some(403)
    );
    // A browser from an origin that is not allowed: 403, even with a good token.
    assert_eq!(
        open(p, "/api/ws", Some(ADMIN), Some("https://evil.example"))
            .await
            .err(),
        Some(403)
    );

    // Good: header, query parameter, JWT, allowed origin.
    let mut admin = open(p, "/api/ws", Some(ADMIN), Some(ORIGIN))
        .await
        .expect("admin token");
    admin.next_json().await;
    let mut by_query = open(p, &format!("/api/ws?token={}", admin_jwt), None, None)
        .await
        .expect("JWT in the query");
    by_query.next_json().await;
    let mut boat = open(p, &format!("/api/ws/vehicle/2?token={BOAT2}"), None, None)
        .await
        .expect("its own vehicle");
    boat.next_json().await;

    // A vehicle-scoped client can subscribe to nothing else.
    boat.send_json(json!({"type": "subscribe", "vehicle_id": 3}))
        .await;
    assert_eq!(
        boat.next_json().await["message"],
        "Not allowed: this token does not allow vehicle 3"
    );
    boat.send_json(json!({"type": "subscribe"})).await;
    assert_eq!(boat.next_json().await["type"], "error");
    app.publish("3/raw_log", "not for boat 2").await;
    app.publish("2/raw_log", "for boat 2").await;
    assert_eq!(boat.next_data().await["data"], "for boat 2");
    assert_eq!(admin.next_data().await["data"], "not for boat 2");
    app.stop().await;
}

#[actix_web::test]
async fn the_rest_api_requires_a_token_and_respects_its_scope() {
    let mut app = spawn_with(Resources::fresh().await, |s| {
        s.auth_tokens = Some(format!("{ADMIN} {BOAT2}:2"));
        s.allowed_origins = Some(ORIGIN.into());
    })
    .await;
    let get = |path: &str, token: Option<&str>| {
        let mut req = app.http.get(format!("{}{path}", app.address));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("/health", None).await, 200, "liveness stays public");
    assert_eq!(get("/ready", None).await, 200);
    assert_eq!(get("/api/ws/stats", None).await, 401);
    assert_eq!(get("/api/ws/stats", Some("wrong-token-000")).await, 401);
    assert_eq!(get("/api/ws/stats", Some(ADMIN)).await, 200);
    assert_eq!(
        get("/api/mqtt/status", Some(BOAT2)).await,
        403,
        "fleet-wide data needs a fleet token"
    );
    assert_eq!(get("/api/vehicles/3", Some(BOAT2)).await, 403);
    let (status, body) = {
        let mut resp = app
            .http
            .get(format!("{}/api/ws/stats", app.address))
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );

    // CORS follows the same allow-list.
    let preflight = |origin: &'static str| {
        app.http
            .request(
                awc::http::Method::OPTIONS,
                format!("{}/api/ws/stats", app.address),
            )
            .insert_header(("Origin", origin))
            .insert_header(("Access-Control-Request-Method", "GET"))
            .send()
    };
    let ok = preflight(ORIGIN).await.unwrap();
    assert_eq!(
        ok.headers().get("access-control-allow-origin").unwrap(),
        ORIGIN
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    app.stop().await;
}
