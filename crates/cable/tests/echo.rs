//! The engine on its own, without the chat app: an `EchoChannel` served by
//! a real axum server on port 0, spoken to over real WebSockets.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::get;
use cable::channel::HistoryItem;
use cable::{
    ActionData, Cable, CableUpgrade, Channel, Config, DisconnectReason, Identity, Params,
    Rejection, Replay, Reply, Subscription,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::value::{RawValue, to_raw_value};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(5);

/// Whoever the `x-user` header names; no header, no identity.
#[derive(Debug, PartialEq)]
struct User(u64);

impl Identity for User {
    fn user_key(&self) -> u64 {
        self.0
    }
}

/// `{"channel":"EchoChannel","room":"<name>"}` streams `echo:<name>`;
/// `echo` transmits its arguments back; `replay` sends `pages` pages of
/// `per_page` items of `bytes` bytes, counting the pages fetched. Every
/// ended subscription is noted as (user, room).
struct EchoChannel {
    pages_fetched: Arc<AtomicUsize>,
    ended: Arc<Mutex<Vec<(u64, String)>>>,
}

#[async_trait]
impl Channel<User> for EchoChannel {
    async fn subscribe(&self, _user: &User, params: &Params) -> Result<Subscription, Rejection> {
        let room = params
            .get("room")
            .and_then(Value::as_str)
            .ok_or_else(|| Rejection("no room".into()))?;
        Ok(Subscription {
            streams: vec![format!("echo:{room}")],
            ..Subscription::default()
        })
    }

    async fn perform(&self, _user: &User, _params: &Params, action: ActionData) -> Vec<Reply> {
        let number = |key: &str| action.args.get(key).and_then(Value::as_u64).unwrap_or(0);
        match action.action.as_str() {
            "echo" => vec![Reply::transmit(
                to_raw_value(&Value::Object(action.args.clone())).unwrap(),
            )],
            "replay" => vec![Reply::Replay(Box::new(Pages {
                left: number("pages"),
                per_page: number("per_page"),
                bytes: number("bytes") as usize,
                next: 0,
                fetched: self.pages_fetched.clone(),
            }))],
            _ => Vec::new(),
        }
    }

    async fn unsubscribed(&self, user: &User, params: &Params) {
        let room = params.get("room").and_then(Value::as_str).unwrap_or("?");
        self.ended.lock().unwrap().push((user.0, room.to_owned()));
    }
}

struct Pages {
    left: u64,
    per_page: u64,
    bytes: usize,
    next: u64,
    fetched: Arc<AtomicUsize>,
}

#[async_trait]
impl Replay for Pages {
    async fn next_page(&mut self) -> Result<Option<Vec<HistoryItem>>, Rejection> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.fetched.fetch_add(1, Ordering::SeqCst);
        let pad = "r".repeat(self.bytes);
        let items = (0..self.per_page)
            .map(|_| {
                self.next += 1;
                let message = json!({ "n": self.next, "pad": pad });
                HistoryItem {
                    offset: self.next as i64,
                    message: to_raw_value(&message).unwrap(),
                }
            })
            .collect();
        Ok(Some(items))
    }
}

struct Engine {
    addr: SocketAddr,
    cable: Cable<User>,
    pages_fetched: Arc<AtomicUsize>,
    ended: Arc<Mutex<Vec<(u64, String)>>>,
}

async fn open_cable(
    State(cable): State<Cable<User>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: CableUpgrade,
) -> Response {
    let user = headers
        .get("x-user")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .map(User);
    cable.upgrade(upgrade, &uri, &headers, user, peer.ip())
}

async fn start(config: Config) -> Engine {
    let pages_fetched = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(Mutex::new(Vec::new()));
    let cable = Cable::builder(config)
        .channel(
            "EchoChannel",
            EchoChannel {
                pages_fetched: pages_fetched.clone(),
                ended: ended.clone(),
            },
        )
        .build();
    let app = Router::new()
        .route("/cable", get(open_cable))
        .with_state(cable.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Serves until the test's runtime ends.
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Engine {
        addr,
        cable,
        pages_fetched,
        ended,
    }
}

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A client as `user` (none if `None`), with a receive buffer of
/// `window` bytes if given.
async fn connect(engine: &Engine, user: Option<u64>, window: Option<u32>) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(window) = window {
        socket.set_recv_buffer_size(window).unwrap();
    }
    let tcp = socket.connect(engine.addr).await.unwrap();
    let mut request = format!("ws://{}/cable", engine.addr)
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        "actioncable-v1-json".parse().unwrap(),
    );
    if let Some(user) = user {
        headers.insert("x-user", user.to_string().parse().unwrap());
    }
    let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp))
        .await
        .unwrap();
    ws
}

/// The next frame that is not a ping.
async fn next(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["type"] != "ping" {
                return frame;
            }
        }
    }
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

async fn subscribe(ws: &mut Ws, identifier: &str) -> Value {
    send(
        ws,
        json!({ "command": "subscribe", "identifier": identifier }),
    )
    .await;
    next(ws).await
}

async fn perform(ws: &mut Ws, identifier: &str, data: Value) {
    let data = data.to_string();
    send(
        ws,
        json!({ "command": "message", "identifier": identifier, "data": data }),
    )
    .await;
}

fn echo_identifier(room: &str) -> String {
    json!({ "channel": "EchoChannel", "room": room }).to_string()
}

#[tokio::test]
async fn a_channel_confirms_transmits_and_receives_broadcasts() {
    let engine = start(Config::default()).await;
    let mut ws = connect(&engine, Some(1), None).await;
    assert_eq!(next(&mut ws).await, json!({ "type": "welcome" }));
    let identifier = echo_identifier("a");
    assert_eq!(
        subscribe(&mut ws, &identifier).await,
        json!({ "type": "confirm_subscription", "identifier": identifier })
    );

    perform(
        &mut ws,
        &identifier,
        json!({ "action": "echo", "said": "hi" }),
    )
    .await;
    assert_eq!(
        next(&mut ws).await,
        json!({ "identifier": identifier, "message": { "said": "hi" } })
    );

    let message: Box<RawValue> = to_raw_value(&json!({ "from": "server" })).unwrap();
    engine.cable.broadcast("echo:a", &message);
    engine.cable.broadcast("echo:b", &message);
    assert_eq!(
        next(&mut ws).await,
        json!({ "identifier": identifier, "message": { "from": "server" } })
    );
    assert_eq!(engine.cable.subscriber_count("echo:a"), 1);
}

#[tokio::test]
async fn a_socket_without_an_identity_is_told_unauthorized() {
    let engine = start(Config::default()).await;
    let mut ws = connect(&engine, None, None).await;
    assert_eq!(
        next(&mut ws).await,
        json!({ "type": "disconnect", "reason": "unauthorized", "reconnect": false })
    );
}

#[tokio::test]
async fn unknown_channels_and_overlong_identifiers_are_rejected() {
    let engine = start(Config {
        max_identifier_bytes: 100,
        ..Config::default()
    })
    .await;
    let mut ws = connect(&engine, Some(1), None).await;
    next(&mut ws).await;
    let unknown = json!({ "channel": "NoSuchChannel" }).to_string();
    assert_eq!(
        subscribe(&mut ws, &unknown).await["type"],
        "reject_subscription"
    );
    let long = echo_identifier(&"x".repeat(100));
    assert_eq!(
        subscribe(&mut ws, &long).await["type"],
        "reject_subscription"
    );
    let short = echo_identifier("ok");
    assert_eq!(
        subscribe(&mut ws, &short).await["type"],
        "confirm_subscription"
    );
}

#[tokio::test]
async fn a_replay_is_fetched_a_page_at_a_time_as_the_client_reads() {
    let engine = start(Config::default()).await;
    let mut ws = connect(&engine, Some(1), Some(4096)).await;
    next(&mut ws).await;
    let identifier = echo_identifier("r");
    subscribe(&mut ws, &identifier).await;

    // 400 pages of 10 items of 4 KB: 16 MB, more than every buffer between.
    let pages = 400;
    let replay = json!({ "action": "replay", "pages": pages, "per_page": 10, "bytes": 4000 });
    perform(&mut ws, &identifier, replay).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fetched_while_stalled = engine.pages_fetched.load(Ordering::SeqCst);
    assert!(
        fetched_while_stalled < pages / 2,
        "{fetched_while_stalled} of {pages} pages fetched for a client that reads nothing"
    );

    for n in 1..=pages * 10 {
        let frame = next(&mut ws).await;
        assert_eq!(frame["message"]["n"], n);
    }
    assert_eq!(engine.pages_fetched.load(Ordering::SeqCst), pages);
}

#[tokio::test]
async fn a_user_past_their_connection_share_gets_429() {
    let engine = start(Config {
        max_connections_per_user: 2,
        ..Config::default()
    })
    .await;
    let _one = connect(&engine, Some(7), None).await;
    let _two = connect(&engine, Some(7), None).await;
    let mut request = format!("ws://{}/cable", engine.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert("x-user", "7".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
        }
        other => panic!("expected 429, got {other:?}"),
    }
    let mut other_user = connect(&engine, Some(8), None).await;
    assert_eq!(next(&mut other_user).await, json!({ "type": "welcome" }));
}

/// The ended subscriptions once there are `count` of them, sorted; fails
/// after [`WAIT`].
async fn ended(engine: &Engine, count: usize) -> Vec<(u64, String)> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut seen = engine.ended.lock().unwrap().clone();
        if seen.len() >= count || tokio::time::Instant::now() > deadline {
            seen.sort();
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn unsubscribed_is_called_once_for_each_accepted_subscription_however_it_ends() {
    let engine = start(Config {
        max_subscriptions_per_user: 3,
        ..Config::default()
    })
    .await;

    // An unsubscribe command; a rejected subscription is never "ended".
    let mut ws = connect(&engine, Some(1), None).await;
    next(&mut ws).await;
    let a = echo_identifier("a");
    subscribe(&mut ws, &a).await;
    let roomless = json!({ "channel": "EchoChannel" }).to_string();
    assert_eq!(
        subscribe(&mut ws, &roomless).await["type"],
        "reject_subscription"
    );
    send(
        &mut ws,
        json!({ "command": "unsubscribe", "identifier": a }),
    )
    .await;
    assert_eq!(ended(&engine, 1).await, [(1, "a".to_owned())]);

    // A socket dropped without a close handshake; a repeated subscribe
    // is one subscription.
    let b = echo_identifier("b");
    subscribe(&mut ws, &b).await;
    subscribe(&mut ws, &b).await;
    drop(ws);

    // A session the server ends (as at sign-out).
    let mut kicked = connect(&engine, Some(2), None).await;
    next(&mut kicked).await;
    subscribe(&mut kicked, &echo_identifier("c")).await;
    assert_eq!(
        engine
            .cable
            .disconnect_where(|user| user.0 == 2, DisconnectReason::Unauthorized),
        1
    );

    // Past the user's share: the channel accepted nothing, nothing ends.
    let mut full = connect(&engine, Some(3), None).await;
    next(&mut full).await;
    for room in ["x", "y", "z"] {
        subscribe(&mut full, &echo_identifier(room)).await;
    }
    assert_eq!(
        subscribe(&mut full, &echo_identifier("over")).await["type"],
        "reject_subscription"
    );
    drop(full);

    let expected: Vec<(u64, String)> = [(1, "a"), (1, "b"), (2, "c"), (3, "x"), (3, "y"), (3, "z")]
        .iter()
        .map(|(user, room)| (*user, room.to_string()))
        .collect();
    assert_eq!(ended(&engine, expected.len()).await, expected);
    // Nothing more trickles in afterwards.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ended(&engine, 0).await, expected);
}
