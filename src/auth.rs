//! Access control for the streams and the API: static tokens or JWTs, optionally limited to
//! some vehicles, and an Origin allow-list for browsers.
//!
//! JWTs are verified by the `jsonwebtoken` crate: HS256 with a shared secret
//! (`AUTH_JWT_SECRET`), and RS256, ES256 or EdDSA with the identity provider's public keys
//! (`AUTH_JWKS_URL`, kept by the JWKS task in [`jwks`]).
//!
//! Off when no credential is configured (the local quick start); on as soon as `AUTH_TOKENS`,
//! `AUTH_JWT_SECRET` or `AUTH_JWKS_URL` is set. A token comes in `Authorization: Bearer <token>`
//! or, for browsers' WebSockets, in `?token=<token>`.

pub mod jwks;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::ConfigError;

/// What a credential allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    AllVehicles,
    Vehicles(BTreeSet<i64>),
}

impl Scope {
    pub fn allows(&self, vehicle_id: i64) -> bool {
        match self {
            Scope::AllVehicles => true,
            Scope::Vehicles(v) => v.contains(&vehicle_id),
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Scope::AllVehicles)
    }
}

/// What a valid credential grants: the vehicles, whether it may send commands, and who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub scope: Scope,
    /// Command rights: a static token's `:commands` flag, a JWT's `"commands": true` claim.
    pub commands: bool,
    /// Who: a JWT's `sub`, `token N` (the Nth entry of `AUTH_TOKENS`), or `local` with access
    /// control off.
    pub subject: String,
}

impl Grant {
    /// With access control off: everything, as `local`.
    pub fn local() -> Grant {
        Grant {
            scope: Scope::AllVehicles,
            commands: true,
            subject: "local".into(),
        }
    }
}

/// Why a request was refused: `Unauthenticated` is HTTP 401, `Forbidden` 403.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
}

/// Which browser origins may use the API and the streams (`ALLOWED_ORIGINS`).
///
/// A request without an `Origin` header (a non-browser client) is never refused for it. The
/// gateway's own origin (the page it served, `Origin` naming the request's `Host`) is always
/// allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OriginPolicy {
    /// Unset: loopback origins (`localhost`, `127.0.0.0/8`, `[::1]`, any port, for local dev
    /// servers) besides the gateway's own.
    #[default]
    Loopback,
    /// A list: exactly these origins besides the gateway's own.
    Listed(Vec<String>),
    /// `*`: any origin (with a warning at start-up).
    Any,
}

impl OriginPolicy {
    /// Parses `ALLOWED_ORIGINS`: unset or empty, `*`, or comma-separated origins such as
    /// `https://ops.example.org,http://localhost:5173`.
    pub fn parse(raw: Option<&str>) -> Result<OriginPolicy, String> {
        let entries: Vec<&str> = raw
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .collect();
        if entries.is_empty() {
            return Ok(OriginPolicy::Loopback);
        }
        if entries.contains(&"*") {
            if entries.len() > 1 {
                return Err("ALLOWED_ORIGINS is either * or a list of origins, not both".into());
            }
            return Ok(OriginPolicy::Any);
        }
        let mut list = Vec::new();
        for entry in entries {
            let origin = entry.trim_end_matches('/');
            let parsed = url::Url::parse(origin)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .filter(|u| u.path() == "/" && u.query().is_none())
                .ok_or_else(|| {
                    format!("'{entry}' is not an origin like https://ops.example.org or http://localhost:5173")
                })?;
            list.push(parsed.origin().ascii_serialization());
        }
        Ok(OriginPolicy::Listed(list))
    }

    /// Whether a browser page from `origin` may send commands: as [`Self::allows`], except that
    /// `*` opens reading only; commands then come from the gateway's own origin or loopback.
    pub fn allows_commands(&self, origin: &str, host: Option<&str>) -> bool {
        match self {
            OriginPolicy::Any => OriginPolicy::Loopback.allows(origin, host),
            other => other.allows(origin, host),
        }
    }

    /// Whether a browser page from `origin` may use a gateway reached as `host` (the request's
    /// `Host` header).
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let Some(parsed) = url::Url::parse(origin)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
        else {
            // `null` (sandboxed frames, file pages) and anything else unparsable.
            return matches!(self, OriginPolicy::Any);
        };
        let serialized = parsed.origin().ascii_serialization();
        let authority = serialized.split_once("://").map_or("", |(_, a)| a);
        if host.is_some_and(|h| h.eq_ignore_ascii_case(authority)) {
            return true;
        }
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::Listed(list) => list.contains(&serialized),
            OriginPolicy::Loopback => match parsed.host() {
                Some(url::Host::Domain(d)) => {
                    d.eq_ignore_ascii_case("localhost")
                        || d.to_ascii_lowercase().ends_with(".localhost")
                }
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            },
        }
    }
}

/// How JWTs are checked (`AUTH_JWT_*`, `AUTH_JWKS_*`); the defaults are the settings'.
#[derive(Clone, Debug)]
pub struct JwtSettings {
    /// `AUTH_JWT_SECRET`: HS256 with this shared secret.
    pub secret: Option<String>,
    /// `AUTH_JWKS_URL`: RS256, ES256 and EdDSA with the identity provider's keys.
    pub jwks_url: Option<String>,
    pub jwks_refresh: Duration,
    /// `iss` must be this, when set.
    pub issuer: Option<String>,
    /// `aud` must name this, when set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// The claim (its key, taken literally) that lists the vehicles a token covers.
    pub vehicles_claim: String,
    /// The claim whose `true` grants command rights.
    pub commands_claim: String,
}

impl Default for JwtSettings {
    fn default() -> Self {
        use crate::config::defaults;
        JwtSettings {
            secret: None,
            jwks_url: None,
            jwks_refresh: Duration::from_secs(defaults::AUTH_JWKS_REFRESH_SECS),
            issuer: None,
            audience: None,
            leeway_secs: defaults::AUTH_JWT_LEEWAY_SECS,
            vehicles_claim: defaults::AUTH_JWT_VEHICLES_CLAIM.into(),
            commands_claim: defaults::AUTH_JWT_COMMANDS_CLAIM.into(),
        }
    }
}

impl JwtSettings {
    /// Only the shared secret, the other settings at their defaults.
    pub fn secret(secret: &str) -> JwtSettings {
        JwtSettings {
            secret: Some(secret.into()),
            ..JwtSettings::default()
        }
    }
}

/// How JWTs are verified, once the settings are checked.
#[derive(Clone, Debug)]
struct Jwt {
    secret: Option<DecodingKey>,
    keys: Option<jwks::Keys>,
    /// `exp` required, `nbf` honoured, the leeway, issuer and audience; the algorithm is set
    /// per token, from its key.
    validation: Validation,
    vehicles_claim: String,
    commands_claim: String,
}

#[derive(Clone, Debug, Default)]
pub struct Auth {
    /// SHA-256 of each static token, with what it grants: compared digest to digest, every
    /// entry, so the time taken says nothing about a token's length or which entry matched.
    tokens: Vec<([u8; 32], Grant)>,
    jwt: Option<Jwt>,
    /// The JWKS task until start-up takes it (see [`Auth::jwks_task`]).
    jwks_task: Option<Arc<Mutex<Option<jwks::Refresher>>>>,
    origins: OriginPolicy,
}

impl Auth {
    /// `tokens`: entries separated by commas or spaces, each `TOKEN` (every vehicle),
    /// `TOKEN:1+2+3` (only those vehicles), with `:commands` after either (`TOKEN:*:commands`,
    /// `TOKEN:1+2:commands`) for command rights. `origins`: comma-separated, e.g.
    /// `https://ops.example.org,http://localhost:5173`.
    pub fn new(
        tokens: Option<&str>,
        jwt: &JwtSettings,
        origins: Option<&str>,
    ) -> Result<Auth, ConfigError> {
        let tokens_error = |problem| ConfigError {
            variable: "AUTH_TOKENS",
            problem,
            fix: "Use AUTH_TOKENS=\"long-random-token,boat-token:7+8,ops-token:*:commands\"",
        };
        let mut parsed = Vec::new();
        for (n, entry) in tokens
            .unwrap_or("")
            .split([',', ' ', '\n'])
            .filter(|e| !e.trim().is_empty())
            .enumerate()
        {
            let mut parts = entry.trim().split(':');
            // unwrap: split yields at least one part.
            let token = parts.next().unwrap();
            let mut rest: Vec<&str> = parts.collect();
            let commands = rest.last() == Some(&"commands");
            if commands {
                rest.pop();
            }
            let scope = match rest.as_slice() {
                [] | ["*"] => Scope::AllVehicles,
                [ids] => Scope::Vehicles(
                    ids.split('+')
                        .map(|id| id.parse::<i64>().ok().filter(|v| *v > 0))
                        .collect::<Option<BTreeSet<i64>>>()
                        .ok_or_else(|| {
                            tokens_error(format!(
                                "'{ids}' after '{token}:' is not * or a list of vehicle ids like 1+2+3"
                            ))
                        })?,
                ),
                _ => {
                    return Err(tokens_error(format!(
                        "'{token}:{}' is not TOKEN, TOKEN:1+2+3, TOKEN:*:commands or TOKEN:1+2+3:commands",
                        rest.join(":")
                    )))
                }
            };
            if token.len() < 8 {
                return Err(tokens_error(format!(
                    "token '{token}' is shorter than 8 characters"
                )));
            }
            parsed.push((
                token.to_owned(),
                Grant {
                    scope,
                    commands,
                    subject: format!("token {}", n + 1),
                },
            ));
        }
        let (jwt, jwks_task) = Jwt::new(jwt)?;
        let origins = OriginPolicy::parse(origins).map_err(|problem| ConfigError {
            variable: "ALLOWED_ORIGINS",
            problem,
            fix: "Use * or origins such as https://ops.example.org,http://localhost:5173",
        })?;
        Ok(Auth {
            tokens: parsed
                .into_iter()
                .map(|(token, grant)| (digest(&token), grant))
                .collect(),
            jwt,
            jwks_task: jwks_task.map(|t| Arc::new(Mutex::new(Some(t)))),
            origins,
        })
    }

    /// Whether credentials are required at all.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || self.jwt.is_some()
    }

    /// The browsers' origins allowed, for CORS too.
    pub fn origins(&self) -> &OriginPolicy {
        &self.origins
    }

    /// The JWKS task, to spawn once (with `AUTH_JWKS_URL`; `None` otherwise or once taken).
    /// Until it runs, tokens signed by the identity provider are refused.
    pub fn jwks_task(&self) -> Option<jwks::Refresher> {
        // unwrap: the lock is held only by code that does not panic.
        self.jwks_task.as_ref()?.lock().unwrap().take()
    }

    /// The identity provider's keys, with `AUTH_JWKS_URL`.
    pub fn jwks(&self) -> Option<&jwks::Keys> {
        self.jwt.as_ref()?.keys.as_ref()
    }

    /// Refuses a browser request from an Origin that is not allowed; `host` is the request's
    /// `Host` header (the gateway's own origin is always allowed).
    pub fn check_origin(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), AuthError> {
        match origin {
            Some(o) if !self.origins.allows(o, host) => Err(AuthError::Forbidden(format!(
                "origin '{o}' is not allowed: set ALLOWED_ORIGINS to allow it"
            ))),
            _ => Ok(()),
        }
    }

    /// What the presented credential grants (everything, as `local`, when auth is off). Async
    /// because a JWT naming a key the identity provider published since the last fetch waits
    /// for a refresh of the key set.
    pub async fn authenticate(&self, credential: Option<&str>) -> Result<Grant, AuthError> {
        if !self.enabled() {
            return Ok(Grant::local());
        }
        let credential = credential.filter(|c| !c.is_empty()).ok_or_else(|| {
            AuthError::Unauthenticated(
                "a token is required (Authorization: Bearer, or ?token=)".into(),
            )
        })?;
        let presented = digest(credential);
        let mut matched = None;
        for (token, grant) in &self.tokens {
            if digest_eq(token, &presented) && matched.is_none() {
                matched = Some(grant);
            }
        }
        if let Some(grant) = matched {
            return Ok(grant.clone());
        }
        match &self.jwt {
            Some(jwt) if credential.matches('.').count() == 2 => jwt.verify(credential).await,
            _ => Err(AuthError::Unauthenticated("the token is not valid".into())),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Equal digests, looking at every byte whatever the first difference.
fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

impl Jwt {
    /// `None` when neither a secret nor a key set is configured (then issuer, audience and the
    /// claim names must not be set either).
    fn new(s: &JwtSettings) -> Result<(Option<Jwt>, Option<jwks::Refresher>), ConfigError> {
        let secret = s.secret.as_deref().filter(|s| !s.is_empty());
        let jwks_url = s.jwks_url.as_deref().filter(|s| !s.is_empty());
        let issuer = s.issuer.as_deref().filter(|s| !s.is_empty());
        let audience = s.audience.as_deref().filter(|s| !s.is_empty());
        if secret.is_none() && jwks_url.is_none() {
            for (variable, set) in [
                ("AUTH_JWT_ISSUER", issuer.is_some()),
                ("AUTH_JWT_AUDIENCE", audience.is_some()),
            ] {
                if set {
                    return Err(ConfigError {
                        variable,
                        problem: "it checks JWTs, but no JWT is accepted".into(),
                        fix: "Set AUTH_JWKS_URL (the identity provider's keys) or AUTH_JWT_SECRET, or unset it",
                    });
                }
            }
            return Ok((None, None));
        }
        let secret = match secret {
            Some(s) if s.len() < 16 => return Err(ConfigError {
                variable: "AUTH_JWT_SECRET",
                problem: "AUTH_JWT_SECRET must be at least 16 bytes".into(),
                fix: "Use a random secret of 32 bytes or more, e.g. from `openssl rand -base64 32`",
            }),
            // The length is checked above, and only an empty secret is refused.
            Some(s) => DecodingKey::from_secret(s.as_bytes()).ok(),
            None => None,
        };
        for (variable, name) in [
            ("AUTH_JWT_VEHICLES_CLAIM", &s.vehicles_claim),
            ("AUTH_JWT_COMMANDS_CLAIM", &s.commands_claim),
        ] {
            let reserved = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];
            if name.is_empty() || reserved.contains(&name.as_str()) {
                return Err(ConfigError {
                    variable,
                    problem: format!("'{name}' cannot name this claim"),
                    fix: "Use the claim's key as the identity provider sends it, e.g. vehicles or https://seano.example/vehicles",
                });
            }
        }
        if s.vehicles_claim == s.commands_claim {
            return Err(ConfigError {
                variable: "AUTH_JWT_COMMANDS_CLAIM",
                problem: format!("'{}' is AUTH_JWT_VEHICLES_CLAIM too", s.commands_claim),
                fix: "Name two different claims",
            });
        }
        let (keys, task) = match jwks_url {
            Some(url) => {
                let source = jwks::JwksSource::parse(url).map_err(|problem| ConfigError {
                    variable: "AUTH_JWKS_URL",
                    problem,
                    fix: "Use the identity provider's key set, e.g. https://idp.example/realms/seano/protocol/openid-connect/certs, or file:///etc/seano/jwks.json",
                })?;
                let (task, keys) = jwks::Refresher::new(source, s.jwks_refresh);
                (Some(keys), Some(task))
            }
            None => (None, None),
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = s.leeway_secs;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        match audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            // Unchecked when not configured (providers set `aud` to their own client ids).
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok((
            Some(Jwt {
                secret,
                keys,
                validation,
                vehicles_claim: s.vehicles_claim.clone(),
                commands_claim: s.commands_claim.clone(),
            }),
            task,
        ))
    }

    /// Verifies a JWT: the key is the shared secret for HS256, else the provider's key its
    /// `kid` names, and the algorithm is the key's (the header must agree with it, never the
    /// other way round); then `exp` (required), `nbf`, issuer and audience, and the claims
    /// that make the grant.
    async fn verify(&self, token: &str) -> Result<Grant, AuthError> {
        let invalid =
            |why: &str| AuthError::Unauthenticated(format!("the token is not valid: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            invalid("not a JWT with an accepted algorithm (HS256, RS256, ES256, EdDSA)")
        })?;
        let (alg, found);
        let key = match (header.alg, &self.secret, &self.keys) {
            (Algorithm::HS256, Some(secret), _) => {
                alg = Algorithm::HS256;
                secret
            }
            (a, _, Some(keys)) if jwks::ACCEPTED.contains(&a) => {
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| invalid("no kid in its header"))?;
                found = keys.find(kid).await.map_err(invalid)?;
                if found.alg != a {
                    return Err(invalid(&format!(
                        "its key is for {:?}, not {a:?}",
                        found.alg
                    )));
                }
                alg = found.alg;
                &found.key
            }
            (a, _, _) => return Err(invalid(&format!("algorithm {a:?} is not accepted"))),
        };
        let mut validation = self.validation.clone();
        validation.algorithms = vec![alg];
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => {
                    AuthError::Unauthenticated("the token has expired".into())
                }
                ErrorKind::ImmatureSignature => invalid("not valid yet (nbf)"),
                ErrorKind::InvalidSignature => invalid("bad signature"),
                ErrorKind::InvalidIssuer => invalid("wrong issuer (iss)"),
                ErrorKind::InvalidAudience => invalid("wrong audience (aud)"),
                ErrorKind::MissingRequiredClaim(c) => invalid(&format!("no {c} claim")),
                ErrorKind::InvalidClaimFormat(c) => invalid(&format!("bad {c} claim")),
                ErrorKind::InvalidAlgorithm => invalid("algorithm not accepted for its key"),
                _ => invalid("malformed"),
            })?
            .claims;
        self.grant(&claims).map_err(|why| invalid(&why))
    }

    /// The grant a verified token's claims make: the vehicles claim (absent: every vehicle)
    /// limits the scope, the commands claim `true` grants command rights, `sub` is who.
    fn grant(&self, claims: &serde_json::Value) -> Result<Grant, String> {
        let vehicles = &self.vehicles_claim;
        let scope = match claims.get(vehicles) {
            None | Some(serde_json::Value::Null) => Scope::AllVehicles,
            Some(serde_json::Value::Array(ids)) => ids
                .iter()
                .map(|v| v.as_i64().filter(|id| *id > 0))
                .collect::<Option<BTreeSet<i64>>>()
                .map(Scope::Vehicles)
                .ok_or_else(|| format!("{vehicles} must be an array of vehicle ids"))?,
            Some(_) => return Err(format!("{vehicles} must be an array of vehicle ids")),
        };
        let commands = match claims.get(&self.commands_claim) {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(_) => return Err(format!("{} must be true or false", self.commands_claim)),
        };
        Ok(Grant {
            scope,
            commands,
            subject: claims["sub"]
                .as_str()
                .map_or_else(|| "jwt".to_owned(), |s| format!("jwt:{s}")),
        })
    }
}

/// Makes an HS256 JWT (for tests and the README's example).
pub fn sign_jwt(secret: &[u8], claims: &serde_json::Value) -> String {
    // expect: only an empty secret is refused, and encoding a JSON value cannot fail.
    let key = jsonwebtoken::EncodingKey::from_secret(secret).expect("a non-empty secret");
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key).expect("an HS256 JWT")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123";

    fn none() -> JwtSettings {
        JwtSettings::default()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[tokio::test]
    async fn static_tokens_carry_their_scope() {
        let auth = Auth::new(
            Some("admin-token-1, boat7-token:7+9, ops-token-1:*:commands, pilot7-token:7:commands"),
            &none(),
            None,
        )
        .unwrap();
        let grant = |t| {
            let auth = auth.clone();
            async move {
                auth.authenticate(Some(t))
                    .await
                    .map(|g| (g.scope, g.commands, g.subject))
            }
        };
        assert_eq!(
            grant("admin-token-1").await,
            Ok((Scope::AllVehicles, false, "token 1".into()))
        );
        assert_eq!(
            grant("boat7-token").await,
            Ok((Scope::Vehicles([7, 9].into()), false, "token 2".into()))
        );
        assert_eq!(
            grant("ops-token-1").await,
            Ok((Scope::AllVehicles, true, "token 3".into()))
        );
        assert_eq!(
            grant("pilot7-token").await,
            Ok((Scope::Vehicles([7].into()), true, "token 4".into()))
        );
        assert!(Auth::new(Some("long-enough:1:2:commands"), &none(), None).is_err());
        assert!(Auth::new(Some("long-enough:1:write"), &none(), None).is_err());
        assert!(matches!(
            auth.authenticate(Some("nope-nope-nope")).await,
            Err(AuthError::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.authenticate(None).await,
            Err(AuthError::Unauthenticated(_))
        ));
        assert!(Auth::new(Some("short"), &none(), None).is_err());
        assert!(Auth::new(Some("long-enough:x"), &none(), None).is_err());
    }

    #[tokio::test]
    async fn jwts_are_checked_for_signature_expiry_and_vehicles() {
        let auth = Auth::new(
            None,
            &JwtSettings::secret(std::str::from_utf8(SECRET).unwrap()),
            None,
        )
        .unwrap();
        let exp = now() + 600;
        let good = sign_jwt(SECRET, &json!({"sub": "ops", "exp": exp, "vehicles": [3]}));
        assert_eq!(
            auth.authenticate(Some(&good)).await,
            Ok(Grant {
                scope: Scope::Vehicles([3].into()),
                commands: false,
                subject: "jwt:ops".into()
            })
        );
        let pilot = sign_jwt(SECRET, &json!({"exp": exp, "commands": true}));
        assert!(auth.authenticate(Some(&pilot)).await.unwrap().commands);
        let odd = sign_jwt(SECRET, &json!({"exp": exp, "commands": "yes"}));
        assert!(auth.authenticate(Some(&odd)).await.is_err());
        // Past the default leeway of 60 s.
        let expired = sign_jwt(SECRET, &json!({"exp": now() - 120}));
        assert_eq!(
            auth.authenticate(Some(&expired)).await,
            Err(AuthError::Unauthenticated("the token has expired".into()))
        );
        let skewed = sign_jwt(SECRET, &json!({"exp": now() - 10}));
        assert!(
            auth.authenticate(Some(&skewed)).await.is_ok(),
            "within the leeway"
        );
        let early = sign_jwt(SECRET, &json!({"exp": exp, "nbf": now() + 300}));
        assert!(auth.authenticate(Some(&early)).await.is_err());
        let all = sign_jwt(SECRET, &json!({"exp": exp}));
        assert_eq!(
            auth.authenticate(Some(&all)).await.map(|g| g.scope),
            Ok(Scope::AllVehicles)
        );
        let forged = sign_jwt(b"another-secret-0000", &json!({"exp": exp}));
        assert!(auth.authenticate(Some(&forged)).await.is_err());
        let no_exp = sign_jwt(SECRET, &json!({"sub": "x"}));
        assert!(auth.authenticate(Some(&no_exp)).await.is_err());
    }

    #[tokio::test]
    async fn issuer_audience_and_claim_names_are_settings() {
        let settings = JwtSettings {
            issuer: Some("https://idp.example/realms/seano".into()),
            audience: Some("seano-gateway".into()),
            vehicles_claim: "https://seano.example/vehicles".into(),
            commands_claim: "https://seano.example/commands".into(),
            ..JwtSettings::secret(std::str::from_utf8(SECRET).unwrap())
        };
        let auth = Auth::new(None, &settings, None).unwrap();
        let claims = |iss: &str, aud: serde_json::Value| {
            json!({"exp": now() + 600, "iss": iss, "aud": aud, "sub": "pilot",
                   "https://seano.example/vehicles": [4], "https://seano.example/commands": true,
                   "vehicles": [5]})
        };
        let good = sign_jwt(
            SECRET,
            &claims(
                "https://idp.example/realms/seano",
                json!(["account", "seano-gateway"]),
            ),
        );
        assert_eq!(
            auth.authenticate(Some(&good)).await,
            Ok(Grant {
                scope: Scope::Vehicles([4].into()),
                commands: true,
                subject: "jwt:pilot".into()
            })
        );
        for (bad, why) in [
            (
                claims("https://evil.example", json!("seano-gateway")),
                "wrong issuer (iss)",
            ),
            (
                claims("https://idp.example/realms/seano", json!("account")),
                "wrong audience (aud)",
            ),
            (
                json!({"exp": now() + 600, "aud": "seano-gateway"}),
                "no iss claim",
            ),
        ] {
            assert_eq!(
                auth.authenticate(Some(&sign_jwt(SECRET, &bad))).await,
                Err(AuthError::Unauthenticated(format!(
                    "the token is not valid: {why}"
                )))
            );
        }
        let none_set = JwtSettings {
            issuer: Some("https://idp.example".into()),
            ..JwtSettings::default()
        };
        assert_eq!(
            Auth::new(None, &none_set, None).err().map(|e| e.variable),
            Some("AUTH_JWT_ISSUER")
        );
        let bad_url = JwtSettings {
            jwks_url: Some("ftp://idp.example/certs".into()),
            ..JwtSettings::default()
        };
        assert_eq!(
            Auth::new(None, &bad_url, None).err().map(|e| e.variable),
            Some("AUTH_JWKS_URL")
        );
    }

    #[tokio::test]
    async fn eddsa_tokens_verify_with_an_ed25519_key_of_the_set() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8v1(&rng).unwrap();
        let key = jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref());
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::EdDSA).unwrap();
        jwk.common.key_id = Some("ed-1".into());
        let path = std::env::temp_dir().join(format!("seano-ed-{}.jwks.json", std::process::id()));
        std::fs::write(&path, json!({ "keys": [jwk] }).to_string()).unwrap();
        let settings = JwtSettings {
            jwks_url: Some(format!("file://{}", path.display())),
            ..JwtSettings::default()
        };
        let auth = Auth::new(None, &settings, None).unwrap();
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let shutdown = tokio_util::sync::CancellationToken::new();
                tokio::task::spawn_local(auth.jwks_task().unwrap().run(shutdown.clone()));
                assert!(
                    auth.jwks()
                        .unwrap()
                        .first_fetch(Duration::from_secs(5))
                        .await
                );
                let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
                header.kid = Some("ed-1".into());
                let claims = json!({"sub": "boat", "exp": now() + 60});
                let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
                assert_eq!(
                    auth.authenticate(Some(&token)).await.map(|g| g.subject),
                    Ok("jwt:boat".into())
                );
                shutdown.cancel();
            })
            .await;
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn by_default_only_the_gateways_own_and_loopback_origins_are_allowed() {
        let default = Auth::new(None, &none(), None).unwrap();
        let host = Some("gw.example:8000");
        for allowed in [
            "http://localhost:5173",
            "http://127.0.0.1:3000",
            "http://[::1]:8080",
            "http://gw.example:8000",
            "https://app.localhost",
        ] {
            assert!(
                default.check_origin(Some(allowed), host).is_ok(),
                "{allowed}"
            );
        }
        for refused in [
            "https://evil.example",
            "null",
            "http://localhost.evil.example",
            "http://gw.example:8001",
            "file://",
        ] {
            assert!(
                default.check_origin(Some(refused), host).is_err(),
                "{refused}"
            );
        }
        assert!(
            default.check_origin(None, host).is_ok(),
            "non-browser clients send no Origin"
        );
    }

    #[test]
    fn a_list_replaces_the_loopback_default_and_star_allows_all() {
        let listed = Auth::new(
            None,
            &none(),
            Some("https://ops.example.org/, http://localhost:5173"),
        )
        .unwrap();
        assert!(listed
            .check_origin(Some("https://ops.example.org"), None)
            .is_ok());
        assert!(listed
            .check_origin(Some("http://localhost:5173"), None)
            .is_ok());
        assert!(listed
            .check_origin(Some("http://localhost:3000"), None)
            .is_err());
        assert!(listed
            .check_origin(Some("https://evil.example"), None)
            .is_err());
        let any = Auth::new(None, &none(), Some("*")).unwrap();
        assert_eq!(any.origins(), &OriginPolicy::Any);
        assert!(!any
            .origins()
            .allows_commands("https://evil.example", Some("gw:8000")));
        assert!(any
            .origins()
            .allows_commands("http://gw:8000", Some("gw:8000")));
        assert!(!listed
            .origins()
            .allows_commands("https://evil.example", None));
        assert!(any.check_origin(Some("https://evil.example"), None).is_ok());
        assert!(Auth::new(None, &none(), Some("*, https://a.example")).is_err());
        assert!(Auth::new(None, &none(), Some("ops.example.org")).is_err());
    }
}
