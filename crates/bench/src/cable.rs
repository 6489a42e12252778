//! One cable client: open the WebSocket (cookie on the upgrade, the v1
//! sub-protocol), wait for the welcome, subscribe and wait for the confirmation.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::net::{Endpoint, connect_from};
use crate::protocol::{self, ServerFrame};

/// An open cable.
pub type Ws = WebSocketStream<TcpStream>;

/// Where and how to open cables.
#[derive(Debug, Clone)]
pub struct CableTarget {
    /// The server.
    pub endpoint: Endpoint,
    /// Path of the cable endpoint, e.g. `/cable`.
    pub path: String,
    /// More identifiers each joining connection subscribes to (`--also`).
    pub also: Vec<String>,
}

/// A small client: bursts of broadcasts are read 16 KiB at a time, and the
/// few frames it sends are written at once.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
}

impl CableTarget {
    /// Opens a cable from `source`, with the Hearth session `cookie` if any,
    /// and waits for `{"type":"welcome"}`.
    pub async fn open(&self, source: IpAddr, cookie: Option<&str>) -> anyhow::Result<Ws> {
        let stream = connect_from(source, self.endpoint.addr)
            .await
            .with_context(|| format!("connecting from {source}"))?;
        let url = format!("ws://{}{}", self.endpoint.host, self.path);
        let mut request = url.into_client_request()?;
        let headers = request.headers_mut();
        headers.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(protocol::SUBPROTOCOL),
        );
        if let Some(cookie) = cookie {
            headers.insert(
                "Cookie",
                HeaderValue::from_str(&format!("hearth_session={cookie}"))?,
            );
        }
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(client_config()))
                .await
                .context("WebSocket handshake")?;
        match next_control(&mut ws).await? {
            ServerFrame::Welcome => Ok(ws),
            other => bail!("expected a welcome, got {other:?}"),
        }
    }

    /// Opens a cable and subscribes to `identifier`, then to each of
    /// [`CableTarget::also`], all within `timeout`.
    pub async fn join(
        &self,
        source: IpAddr,
        cookie: Option<&str>,
        identifier: &str,
        timeout: Duration,
    ) -> anyhow::Result<Ws> {
        tokio::time::timeout(timeout, async {
            let mut ws = self.open(source, cookie).await?;
            subscribe(&mut ws, identifier).await?;
            for also in &self.also {
                subscribe(&mut ws, also).await?;
            }
            Ok(ws)
        })
        .await
        .map_err(|_| anyhow!("timed out after {timeout:?}"))?
    }
}

/// Subscribes and waits for the confirmation (pings in between are skipped).
pub async fn subscribe(ws: &mut Ws, identifier: &str) -> anyhow::Result<()> {
    ws.send(Message::text(protocol::subscribe(identifier)))
        .await?;
    loop {
        match next_control(ws).await? {
            ServerFrame::Confirm => return Ok(()),
            ServerFrame::Reject => bail!("subscription rejected"),
            ServerFrame::Disconnect { reason } => bail!("disconnected: {reason}"),
            _ => continue,
        }
    }
}

/// The next frame that is not a ping.
async fn next_control(ws: &mut Ws) -> anyhow::Result<ServerFrame> {
    loop {
        match ws.next().await {
            None => bail!("connection closed"),
            Some(Err(error)) => return Err(error.into()),
            Some(Ok(Message::Text(text))) => match ServerFrame::parse(&text) {
                ServerFrame::Ping => continue,
                ServerFrame::Disconnect { reason } => bail!("disconnected: {reason}"),
                frame => return Ok(frame),
            },
            Some(Ok(Message::Close(frame))) => bail!("closed by the server: {frame:?}"),
            Some(Ok(_)) => continue,
        }
    }
}
