//! Which origins may open a cable or post a form: the server's own, plus a
//! configured list. Shared by the WebSocket upgrade and the forgery guard.

use axum::http::{HeaderMap, header};

/// The origins a browser request may come from, besides the server's own.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    allowed: Vec<String>,
}

impl OriginPolicy {
    /// Allows the server's own origin plus each of `allowed` (e.g. `https://chat.example.com`).
    pub fn new(allowed: impl IntoIterator<Item = String>) -> Self {
        Self {
            allowed: allowed
                .into_iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect(),
        }
    }

    /// True when the request has no `Origin` header (not a browser's
    /// cross-origin request), or it names this server's host or an allowed origin.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self.allowed.contains(&origin) {
            return true;
        }
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        origin == format!("http://{host}") || origin == format!("https://{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn same_origin_and_missing_origin_pass() {
        let policy = OriginPolicy::default();
        assert!(policy.allows(&headers(&[("host", "127.0.0.1:3000")])));
        assert!(policy.allows(&headers(&[
            ("host", "127.0.0.1:3000"),
            ("origin", "http://127.0.0.1:3000")
        ])));
    }

    #[test]
    fn foreign_origins_fail_unless_configured() {
        let h = headers(&[
            ("host", "127.0.0.1:3000"),
            ("origin", "https://evil.example"),
        ]);
        assert!(!OriginPolicy::default().allows(&h));
        assert!(OriginPolicy::new(["https://evil.example/".to_string()]).allows(&h));
        let null = headers(&[("host", "127.0.0.1:3000"), ("origin", "null")]);
        assert!(!OriginPolicy::default().allows(&null));
    }
}
