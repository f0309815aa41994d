//! Access control for the streams and the API: static tokens or HS256 JWTs, optionally limited
//! to some vehicles, and an Origin allow-list for browsers.
//!
//! Off when no credential is configured (the local quick start); on as soon as `AUTH_TOKENS`
//! or `AUTH_JWT_SECRET` is set. A token comes in `Authorization: Bearer <token>` or, for
//! browsers' WebSockets, in `?token=<token>`.

use std::collections::BTreeSet;

use base64::Engine;
use hmac::{KeyInit, Mac};

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

#[derive(Clone, Debug, Default)]
pub struct Auth {
    /// SHA-256 of each static token, with what it grants: compared digest to digest, every
    /// entry, so the time taken says nothing about a token's length or which entry matched.
    tokens: Vec<([u8; 32], Grant)>,
    jwt_secret: Option<Vec<u8>>,
    origins: OriginPolicy,
}

impl Auth {
    /// `tokens`: entries separated by commas or spaces, each `TOKEN` (every vehicle),
    /// `TOKEN:1+2+3` (only those vehicles), with `:commands` after either (`TOKEN:*:commands`,
    /// `TOKEN:1+2:commands`) for command rights. `origins`: comma-separated, e.g.
    /// `https://ops.example.org,http://localhost:5173`.
    pub fn new(
        tokens: Option<&str>,
        jwt_secret: Option<&str>,
        origins: Option<&str>,
    ) -> Result<Auth, String> {
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
                            format!(
                                "'{ids}' after '{token}:' is not * or a list of vehicle ids like 1+2+3"
                            )
                        })?,
                ),
                _ => {
                    return Err(format!(
                        "'{token}:{}' is not TOKEN, TOKEN:1+2+3, TOKEN:*:commands or TOKEN:1+2+3:commands",
                        rest.join(":")
                    ))
                }
            };
            if token.len() < 8 {
                return Err(format!("token '{token}' is shorter than 8 characters"));
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
        let jwt_secret = match jwt_secret.filter(|s| !s.is_empty()) {
            Some(s) if s.len() < 16 => {
                return Err("AUTH_JWT_SECRET must be at least 16 bytes".into())
            }
            other => other.map(|s| s.as_bytes().to_vec()),
        };
        let origins = OriginPolicy::parse(origins)?;
        Ok(Auth {
            tokens: parsed
                .into_iter()
                .map(|(token, grant)| (digest(&token), grant))
                .collect(),
            jwt_secret,
            origins,
        })
    }

    /// Whether credentials are required at all.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || self.jwt_secret.is_some()
    }

    /// The browsers' origins allowed, for CORS too.
    pub fn origins(&self) -> &OriginPolicy {
        &self.origins
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

    /// What the presented credential grants (everything, as `local`, when auth is off).
    pub fn authenticate(
        &self,
        credential: Option<&str>,
        now_unix: i64,
    ) -> Result<Grant, AuthError> {
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
        match &self.jwt_secret {
            Some(secret) if credential.matches('.').count() == 2 => {
                verify_jwt(secret, credential, now_unix)
            }
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

/// Verifies an HS256 JWT: signature, `exp` (required), `nbf` (if present); the optional
/// `vehicles` claim (array of ids) limits the scope, `"commands": true` grants command rights.
fn verify_jwt(secret: &[u8], token: &str, now: i64) -> Result<Grant, AuthError> {
    let invalid = |why: &str| AuthError::Unauthenticated(format!("the token is not valid: {why}"));
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("not a JWT"));
    };
    let header: serde_json::Value = b64
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or_else(|| invalid("bad header"))?;
    if header["alg"] != "HS256" {
        return Err(invalid("only HS256 is accepted"));
    }
    let signature = b64
        .decode(signature)
        .map_err(|_| invalid("bad signature encoding"))?;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).map_err(|_| invalid("bad key"))?;
    let signed_part = token.len() - token.rsplit('.').next().map_or(0, str::len) - 1;
    mac.update(&token.as_bytes()[..signed_part]);
    mac.verify_slice(&signature)
        .map_err(|_| invalid("bad signature"))?;
    let claims: serde_json::Value = b64
        .decode(claims)
        .ok()
        .and_then(|c| serde_json::from_slice(&c).ok())
        .ok_or_else(|| invalid("bad claims"))?;
    let exp = claims["exp"]
        .as_i64()
        .ok_or_else(|| invalid("no exp claim"))?;
    if now >= exp {
        return Err(AuthError::Unauthenticated("the token has expired".into()));
    }
    if claims["nbf"].as_i64().is_some_and(|nbf| now < nbf) {
        return Err(invalid("not valid yet (nbf)"));
    }
    let scope = match &claims["vehicles"] {
        serde_json::Value::Null => Scope::AllVehicles,
        serde_json::Value::Array(ids) => ids
            .iter()
            .map(|v| v.as_i64().filter(|id| *id > 0))
            .collect::<Option<BTreeSet<i64>>>()
            .map(Scope::Vehicles)
            .ok_or_else(|| invalid("vehicles must be an array of vehicle ids"))?,
        _ => return Err(invalid("vehicles must be an array of vehicle ids")),
    };
    let commands = match &claims["commands"] {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => *b,
        _ => return Err(invalid("commands must be true or false")),
    };
    Ok(Grant {
        scope,
        commands,
        subject: claims["sub"]
            .as_str()
            .map_or_else(|| "jwt".to_owned(), |s| format!("jwt:{s}")),
    })
}

/// Makes an HS256 JWT (for tests and the README's example).
pub fn sign_jwt(secret: &[u8], claims: &serde_json::Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64.encode(claims.to_string());
    // unwrap: HMAC takes a key of any length.
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{head}.{body}").as_bytes());
    let sig = b64.encode(mac.finalize().into_bytes());
    format!("{head}.{body}.{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123";

    #[test]
    fn static_tokens_carry_their_scope() {
        let auth = Auth::new(
            Some("admin-token-1, boat7-token:7+9, ops-token-1:*:commands, pilot7-token:7:commands"),
            None,
            None,
        )
        .unwrap();
        let grant = |t| {
            auth.authenticate(Some(t), 0)
                .map(|g| (g.scope, g.commands, g.subject))
        };
        assert_eq!(
            grant("admin-token-1"),
            Ok((Scope::AllVehicles, false, "token 1".into()))
        );
        assert_eq!(
            grant("boat7-token"),
            Ok((Scope::Vehicles([7, 9].into()), false, "token 2".into()))
        );
        assert_eq!(
            grant("ops-token-1"),
            Ok((Scope::AllVehicles, true, "token 3".into()))
        );
        assert_eq!(
            grant("pilot7-token"),
            Ok((Scope::Vehicles([7].into()), true, "token 4".into()))
        );
        assert!(Auth::new(Some("long-enough:1:2:commands"), None, None).is_err());
        assert!(Auth::new(Some("long-enough:1:write"), None, None).is_err());
        assert!(matches!(
            auth.authenticate(Some("nope-nope-nope"), 0),
            Err(AuthError::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.authenticate(None, 0),
            Err(AuthError::Unauthenticated(_))
        ));
        assert!(Auth::new(Some("short"), None, None).is_err());
        assert!(Auth::new(Some("long-enough:x"), None, None).is_err());
    }

    #[test]
    fn jwts_are_checked_for_signature_expiry_and_vehicles() {
        let auth = Auth::new(None, Some(std::str::from_utf8(SECRET).unwrap()), None).unwrap();
        let good = sign_jwt(SECRET, &json!({"sub": "ops", "exp": 2000, "vehicles": [3]}));
        assert_eq!(
            auth.authenticate(Some(&good), 1000),
            Ok(Grant {
                scope: Scope::Vehicles([3].into()),
                commands: false,
                subject: "jwt:ops".into()
            })
        );
        let pilot = sign_jwt(SECRET, &json!({"exp": 2000, "commands": true}));
        assert!(auth.authenticate(Some(&pilot), 1000).unwrap().commands);
        let odd = sign_jwt(SECRET, &json!({"exp": 2000, "commands": "yes"}));
        assert!(auth.authenticate(Some(&odd), 1000).is_err());
        assert_eq!(
            auth.authenticate(Some(&good), 2000),
            Err(AuthError::Unauthenticated("the token has expired".into()))
        );
        let all = sign_jwt(SECRET, &json!({"exp": 2000}));
        assert_eq!(
            auth.authenticate(Some(&all), 1000).map(|g| g.scope),
            Ok(Scope::AllVehicles)
        );
        let forged = sign_jwt(b"another-secret-0000", &json!({"exp": 2000}));
        assert!(auth.authenticate(Some(&forged), 1000).is_err());
        let no_exp = sign_jwt(SECRET, &json!({"sub": "x"}));
        assert!(auth.authenticate(Some(&no_exp), 1000).is_err());
    }

    #[test]
    fn by_default_only_the_gateways_own_and_loopback_origins_are_allowed() {
        let default = Auth::new(None, None, None).unwrap();
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
            None,
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
        let any = Auth::new(None, None, Some("*")).unwrap();
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
        assert!(Auth::new(None, None, Some("*, https://a.example")).is_err());
        assert!(Auth::new(None, None, Some("ops.example.org")).is_err());
    }
}
