//! `tungstenite-baseline`: the same Action Cable subset as
//! `fanout-reference`, written the way the tokio-tungstenite examples
//! suggest: `accept_async` with the default config (128 KiB read and write
//! buffers), one task per connection with its own ping timer, each room a
//! `tokio::sync::broadcast` channel, and one `send` (write and flush) per
//! frame. It shows what those defaults cost per connection. (TCP_NODELAY is
//! set, as on every peer, so Nagle's delays do not blur the comparison.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

use hearth_bench::peer::{self, Command};
use hearth_bench::protocol::SUBPROTOCOL;

/// Frames a room holds for its slowest subscriber; past it they lag and lose frames.
const ROOM_CAPACITY: usize = 1024;

/// A fan-out server on tokio-tungstenite defaults (the benchmark's baseline).
#[derive(Parser)]
struct Args {
    /// Address to listen on; port 0 picks one (logged as `listening addr=…`).
    #[arg(long, default_value = "127.0.0.1:3200")]
    bind: SocketAddr,
}

/// One broadcast channel per identifier string.
type Rooms = Arc<Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.bind).await?;
    eprintln!("listening addr={}", listener.local_addr()?);
    let rooms = Rooms::default();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        // One task per connection, ending with it.
        tokio::spawn(session(stream, rooms.clone()));
    }
}

/// Echoes the Action Cable sub-protocol when the client offers it.
#[allow(clippy::result_large_err)] // the callback's signature is tungstenite's
fn choose_protocol(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let offered = request
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(peer::offers_subprotocol);
    if offered {
        response.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    Ok(response)
}

async fn session(stream: TcpStream, rooms: Rooms) {
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, choose_protocol).await else {
        return;
    };
    if ws
        .send(Message::text(r#"{"type":"welcome"}"#))
        .await
        .is_err()
    {
        return;
    }
    let mut ping = tokio::time::interval(Duration::from_secs(3));
    ping.tick().await;
    let mut room: Option<broadcast::Receiver<Arc<str>>> = None;
    let mut identifier = String::new();
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if ws.send(Message::text(peer::ping())).await.is_err() {
                    break;
                }
            }
            received = async { room.as_mut().expect("guarded").recv().await }, if room.is_some() => {
                match received {
                    Ok(frame) => {
                        if ws.send(Message::text(frame.as_ref())).await.is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            incoming = ws.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let Some(command) = Command::parse(&text) else {
                    continue;
                };
                match command.command.as_str() {
                    "subscribe" => {
                        let sender = rooms
                            .lock()
                            .expect("not poisoned")
                            .entry(command.identifier.clone())
                            .or_insert_with(|| broadcast::channel(ROOM_CAPACITY).0)
                            .clone();
                        room = Some(sender.subscribe());
                        identifier = command.identifier;
                        if ws.send(Message::text(peer::confirm(&identifier))).await.is_err() {
                            break;
                        }
                    }
                    "message" if command.identifier == identifier => {
                        let Some(content) = command.spoken() else {
                            continue;
                        };
                        let frame = peer::broadcast(&identifier, content);
                        let sender = rooms.lock().expect("not poisoned").get(&identifier).cloned();
                        if let Some(sender) = sender {
                            let _ = sender.send(Arc::from(frame));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
