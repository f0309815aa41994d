//! The identity provider's key set (`AUTH_JWKS_URL`): which public key verifies a JWT, by its
//! `kid`, and with which algorithm.
//!
//! The JWKS task owns the fetching: once at start-up, every `AUTH_JWKS_REFRESH_SECS`, sooner
//! (backing off from 1 s to a minute) while the provider cannot be reached, and when a request
//! asks for it because a token names a key the set does not have. A failed fetch, or a set with
//! no usable key, keeps the last good set; the outage is logged when it starts and when it ends.
//! Request handlers read the current set through a [`Keys`] handle (a `watch` receiver), and
//! ask for a refresh at most once per [`UNKNOWN_KID_INTERVAL`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The algorithms a key from the provider may have; anything else in the set is skipped.
pub const ACCEPTED: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// How long one fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A token naming an unknown key triggers at most one fetch in this interval.
pub const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(10);

/// Largest key set accepted, in bytes.
const MAX_BODY: usize = 1 << 20;

/// Where the key set comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    /// `https://` (or `http://`, for a provider on the same host or network).
    Http(url::Url),
    /// `file://`: a key set kept on disk, read again at each refresh.
    File(PathBuf),
}

impl JwksSource {
    pub fn parse(raw: &str) -> Result<JwksSource, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("'{raw}' is not a URL ({e})"))?;
        match url.scheme() {
            "https" | "http" if url.host().is_some() => Ok(JwksSource::Http(url)),
            "file"
                if raw
                    .get(..7)
                    .is_some_and(|s| s.eq_ignore_ascii_case("file://")) =>
            {
                url.to_file_path()
                    .map(JwksSource::File)
                    .map_err(|()| format!("'{raw}' is not a file:///absolute/path"))
            }
            _ => Err(format!(
                "'{raw}' is neither an https://, http:// nor a file:// URL"
            )),
        }
    }
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::Http(url) => write!(f, "{url}"),
            JwksSource::File(path) => write!(f, "file://{}", path.display()),
        }
    }
}

/// A public key of the set, with the one algorithm it verifies.
#[derive(Clone, Debug)]
pub struct VerifyingKey {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// What the task last published: the keys by `kid`, and how many fetches have finished.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: BTreeMap<String, VerifyingKey>,
    /// Fetches finished, successful or not (waiters wake at each).
    pub attempts: u64,
    /// Whether a key set has ever been fetched.
    pub loaded: bool,
}

/// A request handlers' handle on the key set: cheap to clone.
#[derive(Clone, Debug)]
pub struct Keys {
    current: watch::Receiver<Arc<KeySet>>,
    refresh: mpsc::Sender<()>,
    /// The last refresh a token with an unknown `kid` asked for: when, and how many fetches
    /// had finished before it.
    asked: Arc<Mutex<Option<(Instant, u64)>>>,
}

impl Keys {
    /// The key named `kid`; if the set has none, a refresh (at most one per
    /// [`UNKNOWN_KID_INTERVAL`], shared by every request waiting for it) and another look.
    pub async fn find(&self, kid: &str) -> Result<VerifyingKey, &'static str> {
        let mut current = self.current.clone();
        let attempts = {
            let set = current.borrow_and_update();
            if let Some(key) = set.keys.get(kid) {
                return Ok(key.clone());
            }
            set.attempts
        };
        let unknown = |current: &watch::Receiver<Arc<KeySet>>| {
            if current.borrow().loaded {
                "no key of the identity provider has this kid"
            } else {
                "the identity provider's keys have not been fetched yet"
            }
        };
        {
            // unwrap: the lock is held only by code that does not panic.
            let mut asked = self.asked.lock().unwrap();
            let now = Instant::now();
            match *asked {
                // A fetch asked for recently has finished since, without this key: wait.
                Some((at, before)) if attempts > before && now - at < UNKNOWN_KID_INTERVAL => {
                    return Err(unknown(&current));
                }
                // One is under way: wait for it rather than ask again.
                Some((at, before)) if attempts == before && now - at < FETCH_TIMEOUT => {}
                _ => {
                    *asked = Some((now, attempts));
                    // Full: a refresh is already asked for, and this request waits for it too.
                    let _ = self.refresh.try_send(());
                }
            }
        }
        let wait = FETCH_TIMEOUT + Duration::from_secs(1);
        if let Ok(Ok(())) = tokio::time::timeout(wait, current.changed()).await {
            if let Some(key) = current.borrow().keys.get(kid) {
                return Ok(key.clone());
            }
        }
        Err(unknown(&current))
    }

    /// Waits until the first fetch has finished, successfully or not, for at most `limit`.
    pub async fn first_fetch(&self, limit: Duration) -> bool {
        let mut current = self.current.clone();
        let done = tokio::time::timeout(limit, current.wait_for(|set| set.attempts > 0)).await;
        matches!(done, Ok(Ok(_)))
    }

    /// Whether a key set has been fetched.
    pub fn loaded(&self) -> bool {
        self.current.borrow().loaded
    }
}

/// The JWKS task: fetches the key set and publishes it to the [`Keys`] handles.
#[derive(Debug)]
pub struct Refresher {
    source: JwksSource,
    every: Duration,
    publish: watch::Sender<Arc<KeySet>>,
    requests: mpsc::Receiver<()>,
}

impl Refresher {
    /// The task and the handle request handlers use; nothing is fetched until [`Self::run`].
    pub fn new(source: JwksSource, every: Duration) -> (Refresher, Keys) {
        let (publish, current) = watch::channel(Arc::new(KeySet::default()));
        let (refresh, requests) = mpsc::channel(1);
        (
            Refresher {
                source,
                every,
                publish,
                requests,
            },
            Keys {
                current,
                refresh,
                asked: Arc::default(),
            },
        )
    }

    /// Fetches now, then on schedule and on request, until `shutdown`. Runs on the thread that
    /// spawned it (the HTTP client is not `Send`).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let client = match &self.source {
            JwksSource::Http(url) => Some(http_client(url.scheme() == "https")),
            JwksSource::File(_) => None,
        };
        // Failures in a row; the outage is logged when it starts and when it ends.
        let mut failures = 0u32;
        let mut next = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
                Some(()) = self.requests.recv() => {}
            }
            let fetched = match &self.source {
                JwksSource::Http(url) => fetch_http(client.as_ref(), url).await,
                JwksSource::File(path) => fetch_file(path.clone()).await,
            }
            .and_then(|body| parse(&body));
            let loaded = self.publish.borrow().loaded;
            match fetched {
                Ok((keys, skipped)) => {
                    if failures > 0 {
                        log::info!(
                            "JWKS {} reachable again after {failures} failed fetch(es)",
                            self.source
                        );
                    }
                    let changed = {
                        let old = self.publish.borrow();
                        !old.loaded
                            || old.keys.len() != keys.len()
                            || old.keys.keys().zip(keys.keys()).any(|(a, b)| a != b)
                    };
                    if changed {
                        log::info!(
                            "JWKS {}: keys {}{}",
                            self.source,
                            describe(&keys),
                            if skipped.is_empty() {
                                String::new()
                            } else {
                                format!("; skipped {}", skipped.join(", "))
                            }
                        );
                    }
                    failures = 0;
                    next = Instant::now() + self.every;
                    self.publish.send_modify(|set| {
                        *set = Arc::new(KeySet {
                            keys,
                            attempts: set.attempts + 1,
                            loaded: true,
                        })
                    });
                }
                Err(why) => {
                    if failures == 0 {
                        if loaded {
                            log::warn!(
                                "cannot refresh the JWKS from {}: {why}; the last keys fetched stay in use, retrying",
                                self.source
                            );
                        } else {
                            log::error!(
                                "cannot fetch the JWKS from {}: {why}; JWTs from the identity provider are refused until it is fetched (retrying; static tokens and AUTH_JWT_SECRET still work)",
                                self.source
                            );
                        }
                    } else {
                        log::debug!("JWKS {}: fetch failed again: {why}", self.source);
                    }
                    failures = failures.saturating_add(1);
                    let backoff = Duration::from_secs(1 << failures.min(6).saturating_sub(1));
                    next = Instant::now() + backoff.min(self.every);
                    self.publish.send_modify(|set| {
                        *set = Arc::new(KeySet {
                            keys: set.keys.clone(),
                            attempts: set.attempts + 1,
                            loaded: set.loaded,
                        })
                    });
                }
            }
        }
    }
}

/// `kid (alg)` of each key.
fn describe(keys: &BTreeMap<String, VerifyingKey>) -> String {
    keys.iter()
        .map(|(kid, k)| format!("{kid} ({:?})", k.alg))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An HTTP client for the provider: rustls with ring, as the MQTT side, and the system's roots.
fn http_client(tls: bool) -> awc::Client {
    let mut connector = awc::Connector::new().timeout(FETCH_TIMEOUT);
    if tls {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            log::warn!("loading the system's CA certificates for the JWKS: {error}");
        }
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            log::warn!("no system CA certificate found: the JWKS cannot be fetched over https (install ca-certificates)");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        match rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
        {
            Ok(builder) => {
                let mut config = builder.with_root_certificates(roots).with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                connector = connector.rustls_0_23(Arc::new(config));
            }
            Err(e) => log::error!("TLS for the JWKS: {e}"),
        }
    }
    awc::Client::builder()
        .connector(connector)
        .timeout(FETCH_TIMEOUT)
        .add_default_header((awc::http::header::ACCEPT, "application/json"))
        .finish()
}

async fn fetch_http(client: Option<&awc::Client>, url: &url::Url) -> Result<Vec<u8>, String> {
    let client = client.ok_or("no HTTP client")?;
    let mut resp = client
        .get(url.as_str())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let body = resp
        .body()
        .limit(MAX_BODY)
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok(body.to_vec())
}

async fn fetch_file(path: PathBuf) -> Result<Vec<u8>, String> {
    tokio::task::spawn_blocking(move || std::fs::read(&path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// The usable keys of a JWKS document, and why the others were skipped. A document without a
/// usable key is an error (the last good set stays).
fn parse(body: &[u8]) -> Result<(BTreeMap<String, VerifyingKey>, Vec<String>), String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let doc: Document = serde_json::from_slice(body)
        .map_err(|e| format!("not a JWKS document ({{\"keys\": [...]}}): {e}"))?;
    let mut keys = BTreeMap::new();
    let mut skipped = Vec::new();
    for (n, value) in doc.keys.into_iter().enumerate() {
        let kid = value["kid"]
            .as_str()
            .map_or_else(|| format!("key {}", n + 1), str::to_owned);
        match key(value) {
            Ok(_) if keys.contains_key(&kid) => skipped.push(format!("{kid}: a second key")),
            Ok(key) => {
                keys.insert(kid, key);
            }
            Err(why) => skipped.push(format!("{kid}: {why}")),
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "no usable key in the set ({})",
            if skipped.is_empty() {
                "it is empty".to_owned()
            } else {
                skipped.join(", ")
            }
        ));
    }
    Ok((keys, skipped))
}

/// A signing key of the provider and its algorithm: the JWK's `alg`, or for a JWK without one,
/// the algorithm its type implies (RSA: RS256, EC P-256: ES256, OKP Ed25519: EdDSA).
fn key(value: serde_json::Value) -> Result<VerifyingKey, String> {
    if value["kid"].as_str().is_none() {
        return Err("no kid".into());
    }
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("not a JWK ({e})"))?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Err("not a signing key (use)".into());
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Some(Algorithm::EdDSA)
        }
        _ => None,
    };
    let alg = match jwk.common.key_algorithm {
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(KeyAlgorithm::EdDSA) => Algorithm::EdDSA,
        Some(other) => return Err(format!("algorithm {other} is not accepted")),
        None => implied.ok_or("a key type other than RSA, EC P-256 or Ed25519")?,
    };
    // The parameters must be of the algorithm's kind: an `oct` secret or a P-384 point labelled
    // ES256 is refused here, not at the first token.
    if implied != Some(alg) {
        return Err(format!("its parameters are not a key for {alg:?}"));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable ({e})"))?;
    Ok(VerifyingKey { alg, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_https_http_or_file_urls() {
        assert!(matches!(
            JwksSource::parse("https://idp.example/realms/seano/protocol/openid-connect/certs"),
            Ok(JwksSource::Http(_))
        ));
        assert_eq!(
            JwksSource::parse("file:///etc/seano/jwks.json"),
            Ok(JwksSource::File("/etc/seano/jwks.json".into()))
        );
        for bad in [
            "idp.example/certs",
            "ftp://idp.example/certs",
            "file:jwks.json",
            "https://",
        ] {
            assert!(JwksSource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_keep_the_algorithm_of_their_kind_and_others_are_skipped() {
        // A P-256 point (the generator) and a small RSA modulus are enough to parse.
        let ec = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "ec",
            "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
            "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"});
        let rsa =
            serde_json::json!({"kty": "RSA", "kid": "rsa", "use": "sig", "n": "sXch", "e": "AQAB"});
        let doc = serde_json::json!({"keys": [
            ec,
            rsa,
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB"},
            {"kty": "oct", "kid": "secret", "alg": "HS256", "k": "c2VjcmV0"},
            {"kty": "oct", "kid": "disguised", "alg": "RS256", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "pss", "alg": "PS256", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "n": "sXch", "e": "AQAB"},
        ]});
        let (keys, skipped) = parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(
            keys.iter()
                .map(|(k, v)| (k.as_str(), v.alg))
                .collect::<Vec<_>>(),
            [("ec", Algorithm::ES256), ("rsa", Algorithm::RS256)]
        );
        assert_eq!(skipped.len(), 5, "{skipped:?}");
        assert!(parse(br#"{"keys": []}"#).is_err());
        assert!(parse(b"<html>").is_err());
    }
}
