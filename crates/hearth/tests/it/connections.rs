//! Connections that hold the server without finishing a request (slowloris):
//! partial headers, idle keep-alives, half-done WebSocket handshakes and
//! slow bodies are closed by the timeouts, while real requests and open
//! WebSockets carry on. And the operator routes on their private address.

use std::time::Duration;

use crate::common::{TestApp, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection; fails if it is still open
/// after [`WAIT`]. Returns what was read.
async fn read_until_closed(tcp: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, tcp.read(&mut buffer)).await {
            Err(_) => panic!(
                "the connection is still open after {WAIT:?}; read so far: {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&received).into_owned(),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.addr).await.expect("connect")
}

async fn short_timeouts() -> TestApp {
    TestApp::spawn_with(&["--header-read-timeout", "1", "--request-timeout", "1"]).await
}

#[tokio::test]
async fn a_request_whose_headers_never_end_is_closed() {
    let app = short_timeouts().await;
    let mut tcp = connect(&app).await;
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: hearth\r\nX-Slow: 1\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut tcp).await;
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let app = short_timeouts().await;
    let mut tcp = connect(&app).await;
    assert_eq!(read_until_closed(&mut tcp).await, "");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_its_answer() {
    let app = short_timeouts().await;
    let mut tcp = connect(&app).await;
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: hearth\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(
        answer.ends_with("ok"),
        "one answer, then the close: {answer}"
    );
}

#[tokio::test]
async fn a_half_done_websocket_handshake_is_closed() {
    let app = short_timeouts().await;
    let mut tcp = connect(&app).await;
    tcp.write_all(
        b"GET /cable HTTP/1.1\r\nHost: hearth\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\n",
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut tcp).await;
    assert!(!answer.contains("101"), "{answer}");
}

#[tokio::test]
async fn a_request_whose_body_never_ends_gets_408() {
    let app = short_timeouts().await;
    let mut tcp = connect(&app).await;
    tcp.write_all(
        b"POST /sign_in HTTP/1.1\r\nHost: hearth\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail=",
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn real_requests_and_open_websockets_outlive_the_timeouts() {
    let app = short_timeouts().await;
    let ann = app.sign_up("ann").await;
    let room = app.general_room(&ann).await;
    let (mut cable, identifier) = app.join(&ann, room).await;
    // Longer than both timeouts: the WebSocket is no request any more.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        app.post_message(&ann, room, "still here").await.status(),
        201
    );
    assert_eq!(
        cable.next_message(&identifier).await["content"],
        "still here"
    );

    // A keep-alive connection that asks again in time is served again.
    let mut tcp = connect(&app).await;
    for _ in 0..3 {
        tcp.write_all(b"GET /health HTTP/1.1\r\nHost: hearth\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buffer))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(buffer[..n].starts_with(b"HTTP/1.1 200 OK"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn with_ops_bind_metrics_and_ready_are_served_only_on_the_private_address() {
    let mut app = TestApp::spawn_with(&["--ops-bind", "127.0.0.1:0"]).await;
    let ops = app.ops_addr.expect("an ops address");
    assert_ne!(ops, app.addr);
    for path in ["/metrics", "/ready"] {
        assert_eq!(
            app.get(path, None).await.status(),
            404,
            "{path} on the app port"
        );
        let private = app
            .client()
            .get(format!("http://{ops}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(private.status(), 200, "{path} on the ops address");
    }
    let metrics = app
        .client()
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("hearth_connections"), "{metrics}");
    assert_eq!(app.get("/health", None).await.status(), 200);
    app.shutdown().await;
    assert!(
        TcpStream::connect(ops).await.is_err(),
        "the ops address closes at shutdown too"
    );
}

#[tokio::test]
async fn without_ops_bind_metrics_stay_on_the_app_port() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/metrics", None).await.status(), 200);
    assert_eq!(app.get("/ready", None).await.status(), 200);
    assert!(app.ops_addr.is_none());
}
