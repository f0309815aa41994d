//! Authorization on what the handler serves: every route, every credential, every spelling of
//! a vehicle the router accepts; and the browser-origin rule.

use serde_json::json;

use crate::helpers::{spawn_with, Resources};

const ADMIN: &str = "admin-token-123";
const BOAT1: &str = "boat1-token-456";
const SECRET: &str = "jwt-secret-0123456789";

/// The paths a test can call for each route of the table.
fn concrete(path: &str, vehicle: &str) -> String {
    path.replace("{vehicle_id}", vehicle)
        .replace("{type}", "raw_log")
        .replace("{request_id}", "no-such-command")
}

/// Status of a GET (a WebSocket upgrade when `ws`) with optional bearer token and Origin.
async fn status(
    port: u16,
    path: &str,
    bearer: Option<&str>,
    origin: Option<&str>,
    ws: bool,
) -> u16 {
    let url = format!("http://127.0.0.1:{port}{path}");
    if ws {
        let mut req = awc::Client::default().ws(url.replace("http://", "ws://"));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        if let Some(o) = origin {
            req = req.origin(o);
        }
        return match req.connect().await {
            Ok(_) => 101,
            Err(awc::error::WsClientError::InvalidResponseStatus(s)) => s.as_u16(),
            Err(e) => panic!("unexpected handshake failure on {path}: {e}"),
        };
    }
    let mut req = awc::Client::default().get(url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(o) = origin {
        req = req.insert_header(("Origin", o));
    }
    req.send().await.expect("HTTP request").status().as_u16()
}

#[actix_web::test]
async fn every_protected_route_refuses_a_request_without_a_credential() {
    let mut app = spawn_with(Resources::fresh().await, |s| {
        s.auth_tokens = Some(ADMIN.into());
    })
    .await;
    app.publish("1/raw_log", "hello").await;
    app.wait_rows("raw_logs", 1).await;
    let table = seano_gateway::http::route_table();
    let mut public: Vec<&str> = Vec::new();
    for route in &table {
        let path = concrete(route.path, "1");
        let ws = route.path.starts_with("/api/ws") && route.path != "/api/ws/stats";
        let anonymous = status(app.port, &path, None, None, ws).await;
        match route.visibility {
            seano_gateway::http::Visibility::Protected => {
                assert_eq!(anonymous, 401, "{path} without a credential");
                let admitted = status(app.port, &path, Some(ADMIN), None, ws).await;
                // A command that does not exist is a 404, after the credential was accepted.
                let missing = route.path.contains("{request_id}") && admitted == 404;
                assert!(
                    admitted == 200 || admitted == 101 || missing,
                    "{path} with the admin token: {admitted}"
                );
            }
            seano_gateway::http::Visibility::Public => {
                assert_ne!(anonymous, 401, "{path} is public");
                public.push(route.path);
            }
        }
    }
    // Public because the table says so, and only these: no data behind any of them.
    assert_eq!(
        public,
        [
            "/health",
            "/ready",
            "/api/openapi.json",
            "/api/asyncapi.json",
            "/api/docs"
        ]
    );
    // Every route the OpenAPI document describes is in the table (so it was checked above).
    let (_, doc) = app.get("/api/openapi.json").await;
    for path in doc["paths"].as_object().unwrap().keys() {
        assert!(
            table.iter().any(|r| r.path == path),
            "{path} is documented but not in route_table()"
        );
    }
    app.stop().await;
}

#[actix_web::test]
async fn a_vehicle_token_reads_no_other_vehicle_however_the_path_spells_it() {
    let mut app = spawn_with(Resources::fresh().await, |s| {
        s.auth_tokens = Some(format!("{ADMIN}, {BOAT1}:1"));
        s.auth_jwt_secret = Some(SECRET.into());
    })
    .await;
    app.publish("1/raw_log", "one").await;
    app.publish("2/raw_log", "two").await;
    app.publish("USV-003/raw_log", "three").await;
    app.wait_rows("raw_logs", 3).await;
    let now = chrono::Utc::now().timestamp();
    let sign = |claims| seano_gateway::auth::sign_jwt(SECRET.as_bytes(), &claims);
    // Expired past the 60 s leeway allowed for clock skew (AUTH_JWT_LEEWAY_SECS).
    let expired = sign(json!({"exp": now - 120, "vehicles": [1]}));
    let boat1_jwt = sign(json!({"exp": now + 600, "vehicles": [1]}));

    let vehicle_routes: Vec<_> = seano_gateway::http::route_table()
        .into_iter()
        .filter(|r| r.path.contains("{vehicle_id}"))
        .collect();
    assert_eq!(
        vehicle_routes.len(),
        5,
        "stream, vehicle, track, commands, history"
    );
    // Every spelling of vehicle 2 (and of the coded vehicle) that the router or a parser might
    // accept.
    let others = [
        "2",
        "%32",
        "02",
        "0002",
        "+2",
        "%2B2",
        "2%20",
        "%202",
        "USV-003",
        "USV%2D003",
        "-2",
        "2.0",
        "0x2",
        "%EF%BC%92",
    ];
    for route in &vehicle_routes {
        let ws = route.path.starts_with("/api/ws");
        for bearer in [None, Some("wrong-token-000"), Some(expired.as_str())] {
            let path = concrete(route.path, "1");
            assert_eq!(
                status(app.port, &path, bearer, None, ws).await,
                401,
                "{path} with {bearer:?}"
            );
        }
        for token in [BOAT1, boat1_jwt.as_str()] {
            for other in others {
                let path = concrete(route.path, other);
                let got = status(app.port, &path, Some(token), None, ws).await;
                assert_eq!(got, 403, "{path} with a token for vehicle 1");
            }
            for own in ["1", "%31", "01"] {
                let path = concrete(route.path, own);
                let got = status(app.port, &path, Some(token), None, ws).await;
                assert!(got == 200 || got == 101, "{path} with its own token: {got}");
            }
        }
    }
    // The fleet-wide routes are closed to a vehicle token.
    for path in ["/api/ws", "/api/vehicles", "/api/ws/stats", "/metrics"] {
        let ws = path == "/api/ws";
        assert_eq!(
            status(app.port, path, Some(BOAT1), None, ws).await,
            403,
            "{path}"
        );
    }
    app.stop().await;
}

#[actix_web::test]
async fn by_default_a_foreign_web_page_can_neither_stream_nor_read() {
    let mut app = spawn_with(Resources::fresh().await, |_| {}).await;
    let p = app.port;
    let evil = Some("https://evil.example");
    assert_eq!(status(p, "/api/ws", None, evil, true).await, 403);
    assert_eq!(status(p, "/api/ws/vehicle/1", None, evil, true).await, 403);
    assert_eq!(status(p, "/api/vehicles", None, evil, false).await, 403);
    let resp = app
        .http
        .get(format!("{}/api/vehicles", app.address))
        .insert_header(("Origin", "https://evil.example"))
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers().get("access-control-allow-origin").is_none(),
        "no CORS header for a foreign origin"
    );
    // Local dev servers, the gateway's own pages, and non-browser clients are fine.
    assert_eq!(
        status(p, "/api/ws", None, Some("http://localhost:5173"), true).await,
        101
    );
    let own = format!("http://127.0.0.1:{p}");
    assert_eq!(status(p, "/api/ws", None, Some(&own), true).await, 101);
    assert_eq!(status(p, "/api/vehicles", None, None, false).await, 200);
    let resp = app
        .http
        .get(format!("{}/api/vehicles", app.address))
        .insert_header(("Origin", "http://localhost:5173"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("access-control-allow-origin").unwrap(),
        "http://localhost:5173"
    );
    app.stop().await;
}

#[actix_web::test]
async fn allowed_origins_lists_exactly_the_origins_or_star_allows_all() {
    let mut listed = spawn_with(Resources::fresh().await, |s| {
        s.allowed_origins = Some("https://ops.example.org".into());
    })
    .await;
    let p = listed.port;
    assert_eq!(
        status(p, "/api/ws", None, Some("https://ops.example.org"), true).await,
        101
    );
    assert_eq!(
        status(p, "/api/ws", None, Some("http://localhost:5173"), true).await,
        403
    );
    assert_eq!(
        status(
            p,
            "/api/vehicles",
            None,
            Some("https://evil.example"),
            false
        )
        .await,
        403
    );
    listed.stop().await;

    let mut any = spawn_with(Resources::fresh().await, |s| {
        s.allowed_origins = Some("*".into());
    })
    .await;
    assert_eq!(
        status(
            any.port,
            "/api/ws",
            None,
            Some("https://evil.example"),
            true
        )
        .await,
        101
    );
    any.stop().await;
}
