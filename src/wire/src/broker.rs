//! `MQTT_URL` parsing.

/// Where the external broker is and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub credentials: Option<(String, String)>,
}

impl BrokerAddress {
    /// Parses `mqtt://[user:pass@]host[:port]` or `mqtts://...` (also `tcp://`, `ssl://`).
    pub fn parse(s: &str) -> Result<BrokerAddress, String> {
        let url = url::Url::parse(s).map_err(|e| format!("'{s}' is not a URL ({e})"))?;
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => return Err(format!("scheme '{other}' is not mqtt or mqtts")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("'{s}' has no host"))?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
        let credentials = (!url.username().is_empty()).then(|| {
            let decode = |p: &str| {
                url::form_urlencoded::parse(p.as_bytes())
                    .map(|(k, _)| k.into_owned())
                    .next()
                    .unwrap_or_default()
            };
            (decode(url.username()), decode(url.password().unwrap_or("")))
        });
        Ok(BrokerAddress {
            host,
            port,
            tls,
            credentials,
        })
    }

    pub fn plain(host: impl Into<String>, port: u16) -> Self {
        BrokerAddress {
            host: host.into(),
            port,
            tls: false,
            credentials: None,
        }
    }
}

impl std::fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes_ports_and_credentials() {
        assert_eq!(
            BrokerAddress::parse("mqtt://localhost").unwrap(),
            BrokerAddress::plain("localhost", 1883)
        );
        let a = BrokerAddress::parse("mqtts://u%40x:p%3Aw@broker:9999").unwrap();
        assert!(a.tls);
        assert_eq!(a.port, 9999);
        assert_eq!(a.credentials, Some(("u@x".into(), "p:w".into())));
        assert!(BrokerAddress::parse("http://x").is_err());
        assert!(BrokerAddress::parse("nonsense").is_err());
    }
}
