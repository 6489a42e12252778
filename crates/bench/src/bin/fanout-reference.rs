//! `fanout-reference`: the smallest server that speaks the Action Cable
//! subset the benchmark uses — welcome, ping, subscribe/confirm, and `speak`
//! broadcast as `{"identifier":…,"message":{"content":…}}` to every
//! subscriber of the same identifier — with no storage and no auth. It is
//! the "machine's practical limit" that Hearth is measured against.
//!
//! What makes it lean: each broadcast frame, WebSocket header included, is
//! encoded once and shared as reference-counted bytes; each connection
//! writes everything queued for it in one vectored write; an idle
//! connection holds no buffers (reads go through a stack buffer, and only a
//! partial frame is kept); one ticker makes the ping frame for everyone.

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use hearth_bench::peer::{self, Command};

/// Largest client frame accepted; a larger one ends the connection.
const MAX_FRAME: usize = 64 * 1024;
/// Most queued frames written in one vectored write (under IOV_MAX).
const BATCH: usize = 1024;
/// Connections waiting to be accepted (the kernel caps it at somaxconn);
/// `TcpListener::bind`'s 128 drops SYNs in a connection storm.
const BACKLOG: u32 = 4096;

/// The minimal batched fan-out server (the benchmark's reference peer).
#[derive(Parser)]
struct Args {
    /// Address to listen on; port 0 picks one (logged as `listening addr=…`).
    #[arg(long, default_value = "127.0.0.1:3100")]
    bind: SocketAddr,
}

/// A connection's outgoing frames; unbounded, as a reference has no policy.
type Queue = mpsc::UnboundedSender<Bytes>;
/// Subscribers of each identifier string, by connection id.
type Rooms = Arc<Mutex<HashMap<String, HashMap<u64, Queue>>>>;

#[tokio::main]
async fn main() -> io::Result<()> {
    let args = Args::parse();
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(args.bind)?;
    let listener = socket.listen(BACKLOG)?;
    eprintln!("listening addr={}", listener.local_addr()?);
    let rooms = Rooms::default();
    let (ping_tx, ping) = watch::channel(Bytes::new());
    // The one ping ticker: owns the watch sender; every session sends its latest value.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3));
        tick.tick().await;
        loop {
            tick.tick().await;
            if ping_tx.send(frame(peer::ping().as_bytes())).is_err() {
                return;
            }
        }
    });
    for id in 1.. {
        let Ok((stream, _)) = listener.accept().await else {
            continue; // e.g. out of file descriptors: keep serving the others
        };
        let _ = stream.set_nodelay(true);
        // One task per connection, ending with it.
        tokio::spawn(session(stream, id, rooms.clone(), ping.clone()));
    }
    Ok(())
}

/// An unmasked, unfragmented server text frame.
fn frame(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x81);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out.into()
}

async fn session(mut stream: TcpStream, id: u64, rooms: Rooms, mut ping: watch::Receiver<Bytes>) {
    if handshake(&mut stream).await.is_err() {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _ = tx.send(frame(br#"{"type":"welcome"}"#));
    ping.mark_unchanged();
    let mut subscribed: Vec<String> = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut batch: Vec<Bytes> = Vec::new();
    loop {
        tokio::select! {
            ready = stream.readable() => {
                let open = ready.is_ok() && read_frames(&stream, &mut partial, |text| {
                    handle(text, id, &tx, &rooms, &mut subscribed);
                });
                if !open {
                    break;
                }
            }
            _ = rx.recv_many(&mut batch, BATCH) => {
                if write_batch(&mut stream, &batch).await.is_err() {
                    break;
                }
                batch.clear();
                if batch.capacity() > 64 {
                    batch = Vec::new();
                }
            }
            changed = ping.changed() => {
                if changed.is_err() {
                    break;
                }
                let _ = tx.send(ping.borrow_and_update().clone());
            }
        }
    }
    let mut rooms = rooms.lock().expect("not poisoned");
    for identifier in subscribed {
        if let Some(room) = rooms.get_mut(&identifier) {
            room.remove(&id);
            if room.is_empty() {
                rooms.remove(&identifier);
            }
        }
    }
}

/// Reads the upgrade request and answers 101, echoing the v1 sub-protocol.
async fn handshake(stream: &mut TcpStream) -> io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > 8192 || stream.read_buf(&mut head).await? == 0 {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
    let text = String::from_utf8_lossy(&head);
    let header = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let key = header("sec-websocket-key").ok_or(io::ErrorKind::InvalidData)?;
    let protocol = header("sec-websocket-protocol")
        .filter(|p| peer::offers_subprotocol(p))
        .map(|_| "Sec-WebSocket-Protocol: actioncable-v1-json\r\n")
        .unwrap_or("");
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{protocol}\r\n",
        derive_accept_key(key.as_bytes())
    );
    stream.write_all(answer.as_bytes()).await
}

/// Reads what the socket holds and handles each complete text frame; false
/// when the connection should end (closed, a close frame, a bad frame).
fn read_frames(stream: &TcpStream, partial: &mut Vec<u8>, mut on_text: impl FnMut(&str)) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.try_read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => partial.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return false,
        }
    }
    let mut at = 0;
    loop {
        let buf = &mut partial[at..];
        if buf.len() < 2 {
            break;
        }
        let (opcode, masked) = (buf[0] & 0x0F, buf[1] & 0x80 != 0);
        let (len, mut start) = match buf[1] & 0x7F {
            126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 if buf.len() >= 10 => (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if !masked || len > MAX_FRAME || buf[0] & 0x80 == 0 {
            return false; // clients must mask; fragments are not needed here
        }
        if buf.len() < start + 4 + len {
            break;
        }
        let mask: [u8; 4] = buf[start..start + 4].try_into().unwrap();
        start += 4;
        let payload = &mut buf[start..start + len];
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        match opcode {
            0x1 => on_text(std::str::from_utf8(payload).unwrap_or("")),
            0x8 => return false,
            _ => {} // pings from clients and binary frames are ignored
        }
        at += start + len;
    }
    partial.drain(..at);
    if partial.is_empty() {
        *partial = Vec::new(); // an idle connection keeps no buffer
    }
    true
}

fn handle(text: &str, id: u64, tx: &Queue, rooms: &Rooms, subscribed: &mut Vec<String>) {
    let Some(command) = Command::parse(text) else {
        return;
    };
    let identifier = &command.identifier;
    match command.command.as_str() {
        "subscribe" => {
            let mut rooms = rooms.lock().expect("not poisoned");
            rooms
                .entry(identifier.clone())
                .or_default()
                .insert(id, tx.clone());
            if !subscribed.contains(identifier) {
                subscribed.push(identifier.clone());
            }
            let _ = tx.send(frame(peer::confirm(identifier).as_bytes()));
        }
        "unsubscribe" => {
            subscribed.retain(|s| s != identifier);
            if let Some(room) = rooms.lock().expect("not poisoned").get_mut(identifier) {
                room.remove(&id);
            }
        }
        "message" if subscribed.contains(identifier) => {
            let Some(content) = command.spoken() else {
                return;
            };
            // Encoded once; every subscriber gets the same bytes.
            let shared = frame(peer::broadcast(identifier, content).as_bytes());
            if let Some(room) = rooms.lock().expect("not poisoned").get(identifier) {
                for queue in room.values() {
                    let _ = queue.send(shared.clone());
                }
            }
        }
        _ => {}
    }
}

/// Writes every queued frame with as few `writev` calls as the socket allows.
async fn write_batch(stream: &mut TcpStream, batch: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = stream.write_vectored(rest).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}
