//! The WebSocket opening handshake (RFC 6455 §4.2) for the cable.
//!
//! axum's `WebSocketUpgrade` does the same checks, but its socket type hides
//! the upgraded stream, and the session writes frames to that stream itself
//! (see [`crate::wire`]). So the handshake is taken here: the request is
//! checked, the sub-protocol chosen, `101 Switching Protocols` answered, and
//! the upgraded connection handed to tungstenite for reading.
//!
//! HTTP/1.1 only: browsers open WebSockets over HTTP/1.1, and so do the
//! proxies in front of Hearth (DEPLOYMENT.md).

use axum::extract::FromRequestParts;
use axum::http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use tungstenite::handshake::derive_accept_key;

/// A request to open a cable, checked and ready to be answered.
#[derive(Debug)]
pub struct CableUpgrade {
    key: HeaderValue,
    offered: Vec<String>,
    pub(crate) on_upgrade: OnUpgrade,
}

/// Why a request to `/cable` is not a WebSocket handshake, and the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeRejection {
    /// 405: the handshake is a `GET`.
    #[error("a WebSocket handshake is a GET request")]
    MethodNotGet,
    /// 505: only HTTP/1.1 upgrades.
    #[error("the cable is opened over HTTP/1.1")]
    NotHttp11,
    /// 400: `Connection: upgrade` and `Upgrade: websocket` are both needed.
    #[error("expected the headers Connection: upgrade and Upgrade: websocket")]
    NotAnUpgrade,
    /// 400: no `Sec-WebSocket-Key`.
    #[error("the Sec-WebSocket-Key header is missing")]
    NoKey,
    /// 426 with `Sec-WebSocket-Version: 13`: another protocol version.
    #[error("only WebSocket version 13 is spoken")]
    Version,
    /// 500: the server could not take over the connection.
    #[error("this connection cannot be upgraded")]
    NotUpgradable,
}

impl IntoResponse for UpgradeRejection {
    fn into_response(self) -> Response {
        let status = match self {
            Self::MethodNotGet => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotHttp11 => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            Self::NotAnUpgrade | Self::NoKey => StatusCode::BAD_REQUEST,
            Self::Version => StatusCode::UPGRADE_REQUIRED,
            Self::NotUpgradable => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut response = (status, self.to_string()).into_response();
        if self == Self::Version {
            response
                .headers_mut()
                .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CableUpgrade {
    type Rejection = UpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if parts.method != Method::GET {
            return Err(UpgradeRejection::MethodNotGet);
        }
        if parts.version != Version::HTTP_11 {
            return Err(UpgradeRejection::NotHttp11);
        }
        let headers = &parts.headers;
        if !has_token(headers, CONNECTION, "upgrade") || !has_token(headers, UPGRADE, "websocket") {
            return Err(UpgradeRejection::NotAnUpgrade);
        }
        if headers
            .get(SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            return Err(UpgradeRejection::Version);
        }
        let key = headers
            .get(SEC_WEBSOCKET_KEY)
            .cloned()
            .ok_or(UpgradeRejection::NoKey)?;
        let offered = headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(UpgradeRejection::NotUpgradable)?;
        Ok(Self {
            key,
            offered,
            on_upgrade,
        })
    }
}

impl CableUpgrade {
    /// The first of `supported` (in the server's order of preference) that
    /// the client offered.
    pub fn choose<'a>(&self, supported: &[&'a str]) -> Option<&'a str> {
        supported
            .iter()
            .find(|s| self.offered.iter().any(|o| o == *s))
            .copied()
    }

    /// `101 Switching Protocols`, echoing `protocol` if one was chosen.
    pub(crate) fn accept(&self, protocol: Option<&'static str>) -> Response {
        let accept = derive_accept_key(self.key.as_bytes());
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
        );
        if let Some(protocol) = protocol {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
        }
        response
    }
}

/// Whether a comma-separated header holds `token`, ignoring case.
fn has_token(headers: &HeaderMap, name: axum::http::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    async fn extract(request: Request<()>) -> Result<CableUpgrade, UpgradeRejection> {
        let (mut parts, ()) = request.into_parts();
        CableUpgrade::from_request_parts(&mut parts, &()).await
    }

    fn handshake(version: &str) -> axum::http::request::Builder {
        Request::get("/cable")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", version)
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    }

    #[tokio::test]
    async fn each_broken_handshake_gets_its_answer() {
        let post = Request::post("/cable").body(()).unwrap();
        assert_eq!(
            extract(post).await.unwrap_err(),
            UpgradeRejection::MethodNotGet
        );
        let plain = Request::get("/cable").body(()).unwrap();
        assert_eq!(
            extract(plain).await.unwrap_err(),
            UpgradeRejection::NotAnUpgrade
        );
        let old = handshake("8").body(()).unwrap();
        let rejection = extract(old).await.unwrap_err();
        assert_eq!(rejection, UpgradeRejection::Version);
        let response = rejection.into_response();
        assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(response.headers()[SEC_WEBSOCKET_VERSION], "13");
        let keyless = Request::get("/cable")
            .header("connection", "upgrade")
            .header("upgrade", "WebSocket")
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        assert_eq!(extract(keyless).await.unwrap_err(), UpgradeRejection::NoKey);
        let http2 = handshake("13").version(Version::HTTP_2).body(()).unwrap();
        assert_eq!(
            extract(http2).await.unwrap_err(),
            UpgradeRejection::NotHttp11
        );
        // A request hyper did not mark as upgradable (no connection behind it).
        let detached = handshake("13").body(()).unwrap();
        assert_eq!(
            extract(detached).await.unwrap_err(),
            UpgradeRejection::NotUpgradable
        );
    }
}
