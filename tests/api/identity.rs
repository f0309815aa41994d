//! JWTs from an identity provider: RSA and EC keys made here, their key set (JWKS) served by a
//! real HTTP server on port 0 (or a file), and a gateway started with `AUTH_JWKS_URL` on it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::{spawn_with, unique, wait_for, Resources, TcpProxy, TestApp};

const ISSUER: &str = "https://idp.example/realms/seano";
const AUDIENCE: &str = "seano-gateway";
const ADMIN: &str = "admin-token-123";

/// A signing key of the test's identity provider.
#[derive(Clone)]
struct TestKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Jwk,
    /// The public key as PEM (what an attacker would use as an HMAC secret).
    public_pem: String,
}

impl TestKey {
    fn rsa(kid: &str) -> TestKey {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let private: aws_lc_rs::encoding::Pkcs8V1Der = pair.as_der().unwrap();
        let key =
            EncodingKey::from_rsa_pem(pem("PRIVATE KEY", private.as_ref()).as_bytes()).unwrap();
        let public: aws_lc_rs::encoding::PublicKeyX509Der = pair.public_key().as_der().unwrap();
        TestKey::new(
            kid,
            Algorithm::RS256,
            key,
            pem("PUBLIC KEY", public.as_ref()),
        )
    }

    fn ec(kid: &str) -> TestKey {
        let alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
        let public: aws_lc_rs::encoding::PublicKeyX509Der = pair.public_key().as_der().unwrap();
        let key = EncodingKey::from_ec_der(pkcs8.as_ref());
        TestKey::new(
            kid,
            Algorithm::ES256,
            key,
            pem("PUBLIC KEY", public.as_ref()),
        )
    }

    fn new(kid: &str, alg: Algorithm, key: EncodingKey, public_pem: String) -> TestKey {
        let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
        jwk.common.key_id = Some(kid.into());
        TestKey {
            kid: kid.into(),
            alg,
            key,
            jwk,
            public_pem,
        }
    }

    /// The same key under another `kid`.
    fn renamed(&self, kid: &str) -> TestKey {
        let mut key = self.clone();
        key.kid = kid.into();
        key.jwk.common.key_id = Some(kid.into());
        key
    }

    /// A JWT with these claims, signed by this key and naming it.
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// Keys made once per test run (an RSA key takes a moment): the provider's RSA and EC keys,
/// and another RSA key no provider publishes.
fn keys() -> &'static (TestKey, TestKey, TestKey) {
    static KEYS: OnceLock<(TestKey, TestKey, TestKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            TestKey::rsa("rsa-1"),
            TestKey::ec("ec-1"),
            TestKey::rsa("rsa-x"),
        )
    })
}

fn jwks(keys: &[&TestKey]) -> Value {
    serde_json::to_value(JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    })
    .unwrap()
}

/// The identity provider's key set endpoint: a real HTTP server on port 0 that serves what the
/// test publishes and counts the fetches.
struct Provider {
    url: String,
    port: u16,
    doc: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl Provider {
    async fn start(keys: &[&TestKey]) -> Provider {
        use actix_web::{web, App, HttpResponse, HttpServer};
        let doc = Arc::new(Mutex::new(jwks(keys)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (d, f) = (doc.clone(), fetches.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            let (d, f) = (d.clone(), f.clone());
            App::new().route(
                "/realms/seano/protocol/openid-connect/certs",
                web::get().to(move || {
                    let (d, f) = (d.clone(), f.clone());
                    async move {
                        f.fetch_add(1, Ordering::SeqCst);
                        let body = d.lock().unwrap().to_string();
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(body)
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Provider {
            url: format!("http://127.0.0.1:{port}/realms/seano/protocol/openid-connect/certs"),
            port,
            doc,
            fetches,
        }
    }

    fn publish(&self, keys: &[&TestKey]) {
        *self.doc.lock().unwrap() = jwks(keys);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a good token: the configured issuer and audience, valid for ten minutes.
fn claims(extra: Value) -> Value {
    let mut c =
        json!({"sub": "ops", "exp": now() + 600, "iss": ISSUER, "aud": [AUDIENCE, "account"]});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

async fn gateway(
    jwks_url: &str,
    tweak: impl FnOnce(&mut seano_gateway::config::Settings),
) -> TestApp {
    let url = jwks_url.to_owned();
    spawn_with(Resources::fresh().await, move |s| {
        s.auth_tokens = Some(ADMIN.into());
        s.auth_jwks_url = Some(url);
        s.auth_jwt_issuer = Some(ISSUER.into());
        s.auth_jwt_audience = Some(AUDIENCE.into());
        tweak(s);
    })
    .await
}

/// Status and body of a GET with a bearer token.
async fn get(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let mut resp = app
        .http
        .get(format!("{}{path}", app.address))
        .bearer_auth(token)
        .send()
        .await
        .expect("HTTP request");
    let body = resp.body().await.expect("HTTP body");
    (
        resp.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// The status of a WebSocket upgrade with the token in `?token=`.
async fn upgrade(app: &TestApp, path: &str, token: &str) -> u16 {
    let url = format!("ws://127.0.0.1:{}{path}?token={token}", app.port);
    match awc::Client::default().ws(url).connect().await {
        Ok(_) => 101,
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => s.as_u16(),
        Err(e) => panic!("unexpected handshake failure on {path}: {e}"),
    }
}

/// POSTs a command as `token`; the status.
async fn command(app: &TestApp, vehicle: i64, token: &str) -> u16 {
    app.http
        .post(format!("{}/api/vehicles/{vehicle}/commands", app.address))
        .bearer_auth(token)
        .send_json(&json!({"command": "RTL"}))
        .await
        .expect("HTTP request")
        .status()
        .as_u16()
}

#[actix_web::test]
async fn rs256_and_es256_tokens_from_the_provider_open_the_api_and_the_streams() {
    let (rsa, ec, _) = keys();
    let idp = Provider::start(&[rsa, ec]).await;
    let mut app = gateway(&idp.url, |_| {}).await;
    assert_eq!(idp.fetches(), 1, "fetched once at start-up");

    for key in [rsa, ec] {
        let token = key.sign(&claims(json!({})));
        assert_eq!(
            get(&app, "/api/vehicles", &token).await.0,
            200,
            "{:?}",
            key.alg
        );
        assert_eq!(upgrade(&app, "/api/ws", &token).await, 101, "{:?}", key.alg);
        let (_, me) = get(&app, "/api/me", &token).await;
        assert_eq!(me["subject"], "jwt:ops", "{me}");
        let scoped = key.sign(&claims(json!({"vehicles": [2]})));
        assert_eq!(upgrade(&app, "/api/ws/vehicle/2", &scoped).await, 101);
        assert_eq!(upgrade(&app, "/api/ws/vehicle/3", &scoped).await, 403);
        assert_eq!(upgrade(&app, "/api/ws", &scoped).await, 403);
    }
    // Static tokens still work beside the provider's.
    assert_eq!(get(&app, "/api/vehicles", ADMIN).await.0, 200);
    assert_eq!(idp.fetches(), 1, "known keys need no fetch");
    app.stop().await;
}

#[actix_web::test]
async fn a_key_the_provider_publishes_after_start_up_is_used_without_a_restart() {
    let (rsa, ec, _) = keys();
    let idp = Provider::start(&[rsa]).await;
    let mut app = gateway(&idp.url, |_| {}).await;
    let old = rsa.sign(&claims(json!({})));
    assert_eq!(get(&app, "/api/vehicles", &old).await.0, 200);

    // Rotation: the provider now signs with a new key and no longer publishes the old one.
    let new = ec.renamed("ec-rotated");
    idp.publish(&[&new]);
    let token = new.sign(&claims(json!({})));
    assert_eq!(
        get(&app, "/api/vehicles", &token).await.0,
        200,
        "the unknown kid made the gateway fetch the key set again"
    );
    assert_eq!(idp.fetches(), 2);
    // Tokens of a key the provider withdrew are refused, and another unknown kid so soon after
    // does not make the gateway fetch again.
    let (status, body) = get(&app, "/api/vehicles", &old).await;
    assert_eq!(status, 401, "{body}");
    let stranger = ec.renamed("ec-unknown").sign(&claims(json!({})));
    assert_eq!(get(&app, "/api/vehicles", &stranger).await.0, 401);
    assert_eq!(
        idp.fetches(),
        2,
        "at most one fetch per 10 s for unknown kids"
    );
    app.stop().await;
}

#[actix_web::test]
async fn when_the_provider_is_unreachable_the_last_keys_fetched_still_verify() {
    let (rsa, ec, _) = keys();
    let idp = Provider::start(&[rsa]).await;
    let proxy = TcpProxy::start(format!("127.0.0.1:{}", idp.port)).await;
    let url = idp
        .url
        .replace(&idp.port.to_string(), &proxy.port.to_string());
    let mut app = gateway(&url, |_| {}).await;
    let token = rsa.sign(&claims(json!({})));
    assert_eq!(get(&app, "/api/vehicles", &token).await.0, 200);

    proxy.cut();
    // A new kid makes the gateway try the provider, which fails; the old keys stay.
    let rotated = ec.renamed("ec-during-outage");
    idp.publish(&[rsa, &rotated]);
    let fetches = idp.fetches();
    let (status, body) = get(&app, "/api/vehicles", &rotated.sign(&claims(json!({})))).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(idp.fetches(), fetches, "the provider was not reached");
    assert_eq!(get(&app, "/api/vehicles", &token).await.0, 200);
    assert_eq!(upgrade(&app, "/api/ws", &token).await, 101);

    // Back: the gateway retries on its own, soon, and picks up the new key.
    proxy.restore();
    let fresh = rotated.sign(&claims(json!({})));
    // The provider counts a fetch when it is asked, before the gateway has the answer: wait
    // for the new key to verify, not for the fetch.
    wait_for("the gateway to take the new key", || async {
        get(&app, "/api/vehicles", &fresh).await.0 == 200
    })
    .await;
    assert!(idp.fetches() > fetches, "the keys came from the provider");
    app.stop().await;
}

#[actix_web::test]
async fn a_gateway_whose_provider_is_down_at_start_up_starts_and_accepts_its_tokens_later() {
    let (rsa, _, _) = keys();
    let idp = Provider::start(&[rsa]).await;
    let proxy = TcpProxy::start(format!("127.0.0.1:{}", idp.port)).await;
    proxy.cut();
    let url = idp
        .url
        .replace(&idp.port.to_string(), &proxy.port.to_string());
    let mut app = gateway(&url, |_| {}).await;
    let token = rsa.sign(&claims(json!({})));
    let (status, body) = get(&app, "/api/vehicles", &token).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not been fetched"),
        "{body}"
    );
    assert_eq!(
        get(&app, "/api/vehicles", ADMIN).await.0,
        200,
        "static tokens work"
    );

    proxy.restore();
    // The provider counts a fetch before the gateway has the answer: wait for the token to
    // verify, not for the fetch.
    wait_for("the first key set to verify the token", || async {
        get(&app, "/api/vehicles", &token).await.0 == 200
    })
    .await;
    assert!(idp.fetches() > 0);
    app.stop().await;
}

#[actix_web::test]
async fn expired_foreign_unknown_unsigned_and_confused_tokens_are_refused() {
    let (rsa, ec, other) = keys();
    let idp = Provider::start(&[rsa, ec]).await;
    let mut app = gateway(&idp.url, |_| {}).await;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let good = claims(json!({}));
    let mut refused: Vec<(&str, String)> = vec![
        ("expired", rsa.sign(&claims(json!({"exp": now() - 120})))),
        (
            "not valid yet",
            rsa.sign(&claims(json!({"nbf": now() + 600}))),
        ),
        ("no exp", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("exp");
            rsa.sign(&c)
        }),
        (
            "wrong issuer",
            ec.sign(&claims(json!({"iss": "https://evil.example/realms/seano"}))),
        ),
        ("no issuer", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("iss");
            ec.sign(&c)
        }),
        (
            "wrong audience",
            rsa.sign(&claims(json!({"aud": "another-client"}))),
        ),
        ("unknown key", other.sign(&good)),
        (
            "another key under a known kid",
            other.renamed("rsa-1").sign(&good),
        ),
        ("alg none", {
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"})),
                b64(&good)
            )
        }),
        ("no kid", {
            jsonwebtoken::encode(&Header::new(Algorithm::RS256), &good, &rsa.key).unwrap()
        }),
    ];
    // Algorithm confusion: HS256 with the provider's public key as the secret, naming its kid.
    for (kid, public) in [("rsa-1", &rsa.public_pem), ("ec-1", &ec.public_pem)] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.into());
        let secret = EncodingKey::from_secret(public.as_bytes()).unwrap();
        refused.push((
            "HS256 with the public key as secret",
            jsonwebtoken::encode(&header, &good, &secret).unwrap(),
        ));
    }
    // A header naming the EC key with the RSA algorithm (signed by the RSA key).
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("ec-1".into());
    refused.push((
        "RS256 under an EC key's kid",
        jsonwebtoken::encode(&header, &good, &rsa.key).unwrap(),
    ));
    for (what, token) in &refused {
        let (status, body) = get(&app, "/api/vehicles", token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(upgrade(&app, "/api/ws", token).await, 401, "{what}");
    }
    assert_eq!(get(&app, "/api/vehicles", &rsa.sign(&good)).await.0, 200);
    app.stop().await;
}

#[actix_web::test]
async fn namespaced_claims_give_the_token_its_vehicles_and_command_rights() {
    let (rsa, _, _) = keys();
    let idp = Provider::start(&[rsa]).await;
    let mut app = gateway(&idp.url, |s| {
        s.auth_jwt_vehicles_claim = "https://seano.example/vehicles".into();
        s.auth_jwt_commands_claim = "https://seano.example/commands".into();
    })
    .await;
    for id in [5, 6] {
        app.publish(&format!("{id}/vehicle_log"), r#"{"mode":"MANUAL"}"#)
            .await;
    }
    wait_for("both vehicles to register", || async {
        app.vehicles().await == 2
    })
    .await;
    let pilot5 = rsa.sign(&claims(json!({
        "sub": "pilot5",
        "https://seano.example/vehicles": [5],
        "https://seano.example/commands": true,
    })));
    let reader5 = rsa.sign(&claims(json!({"https://seano.example/vehicles": [5]})));
    // The plain claims mean nothing once the names are mapped.
    let plain = rsa.sign(&claims(json!({"vehicles": [6], "commands": true})));

    assert_eq!(get(&app, "/api/vehicles/5", &pilot5).await.0, 200);
    assert_eq!(get(&app, "/api/vehicles/6", &pilot5).await.0, 403);
    assert_eq!(get(&app, "/api/vehicles/6", &reader5).await.0, 403);
    assert_eq!(command(&app, 6, &pilot5).await, 403, "another vehicle");
    assert_eq!(command(&app, 5, &reader5).await, 403, "no command rights");
    assert_eq!(
        command(&app, 5, &plain).await,
        403,
        "`commands` is not the mapped claim"
    );
    assert_eq!(
        get(&app, "/api/vehicles/6", &plain).await.0,
        200,
        "every vehicle"
    );
    assert_eq!(app.count("commands").await, 0);
    assert_eq!(command(&app, 5, &pilot5).await, 202);
    let (_, page) = get(&app, "/api/vehicles/5/commands", &pilot5).await;
    assert_eq!(page["items"][0]["sent_by"], "jwt:pilot5", "{page}");
    app.stop().await;
}

#[actix_web::test]
async fn a_key_set_in_a_file_is_read_at_start_up_and_again_for_a_new_kid() {
    let (rsa, ec, _) = keys();
    let path = std::env::temp_dir().join(format!("{}.jwks.json", unique("jwks")));
    std::fs::write(&path, jwks(&[ec]).to_string()).unwrap();
    let mut app = gateway(&format!("file://{}", path.display()), |_| {}).await;
    assert_eq!(
        get(&app, "/api/vehicles", &ec.sign(&claims(json!({}))))
            .await
            .0,
        200
    );

    let added = rsa.renamed("rsa-added");
    std::fs::write(&path, jwks(&[ec, &added]).to_string()).unwrap();
    assert_eq!(
        get(&app, "/api/vehicles", &added.sign(&claims(json!({}))))
            .await
            .0,
        200
    );
    assert_eq!(
        get(&app, "/api/vehicles", &rsa.sign(&claims(json!({}))))
            .await
            .0,
        401
    );
    app.stop().await;
    let _ = std::fs::remove_file(&path);
}

#[actix_web::test]
async fn a_key_set_url_that_cannot_work_stops_start_up_with_the_variable_named() {
    for (tweak, expected) in [
        (
            (|s: &mut seano_gateway::config::Settings| {
                s.auth_jwks_url = Some("ftp://idp.example/certs".into())
            }) as fn(&mut seano_gateway::config::Settings),
            "invalid AUTH_JWKS_URL",
        ),
        (
            |s| s.auth_jwt_issuer = Some(ISSUER.into()),
            "invalid AUTH_JWT_ISSUER",
        ),
        (
            |s| {
                s.auth_jwks_url = Some("https://idp.example/certs".into());
                s.auth_jwt_commands_claim = "vehicles".into();
            },
            "invalid AUTH_JWT_COMMANDS_CLAIM",
        ),
    ] {
        let mut settings = Resources::fresh().await.settings();
        tweak(&mut settings);
        let err = seano_gateway::startup::Application::build(settings)
            .await
            .err()
            .expect("start-up fails");
        let msg = format!("{err:#}");
        assert!(msg.contains(expected), "{msg}");
    }
}
