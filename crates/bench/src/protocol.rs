//! The Action Cable v1 wire as a client sees it: the commands it sends, the
//! frames it reads, and the bench marker carried inside a message's content.
//!
//! A broadcast is recognised by its marker alone (one substring search), so
//! the hot path never parses a frame's JSON: Hearth's `{"type":"message",…}`,
//! Rails' `{"content":…}` and the Rust peers' frames all read the same.

use memchr::memmem;
use serde::{Deserialize, Serialize};

/// The sub-protocol offered on the upgrade.
pub const SUBPROTOCOL: &str = "actioncable-v1-json";

/// `{"channel":"ChatroomChannel","id":<room>}`; a numeric room id is sent as a number.
pub fn identifier(room: &str) -> String {
    match room.parse::<i64>() {
        Ok(n) => format!(r#"{{"channel":"ChatroomChannel","id":{n}}}"#),
        Err(_) => serde_json::json!({"channel": "ChatroomChannel", "id": room}).to_string(),
    }
}

/// The same with Hearth's room params: `"presence":true` (the subscription
/// also gets the room's presence and typing frames) and a `"format"` (how
/// much of each message it takes; Hearth's room page takes `"html"`).
pub fn identifier_with(room: &str, presence: bool, format: Option<&str>) -> String {
    let plain = identifier(room);
    let mut params = String::new();
    if presence {
        params.push_str(r#","presence":true"#);
    }
    if let Some(format) = format {
        params.push_str(",\"format\":");
        params.push_str(&serde_json::Value::from(format).to_string());
    }
    format!("{}{params}}}", &plain[..plain.len() - 1])
}

/// A command from client to server.
#[derive(Debug, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
enum Command<'a> {
    Subscribe { identifier: &'a str },
    Message { identifier: &'a str, data: String },
}

#[derive(Serialize)]
struct Speak<'a> {
    action: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct CatchUp {
    action: &'static str,
    after: u64,
}

/// `{"command":"subscribe","identifier":…}`
pub fn subscribe(identifier: &str) -> String {
    serde_json::to_string(&Command::Subscribe { identifier }).expect("plain strings serialise")
}

/// `{"command":"message","identifier":…,"data":"{\"action\":\"speak\",\"content\":…}"}`
pub fn speak(identifier: &str, content: &str) -> String {
    let data = serde_json::to_string(&Speak {
        action: "speak",
        content,
    })
    .expect("plain strings serialise");
    serde_json::to_string(&Command::Message { identifier, data }).expect("plain strings serialise")
}

/// `{"command":"message",…,"data":"{\"action\":\"catch_up\",\"after\":N}"}`:
/// Hearth's request for every message of the room after `seq` N.
pub fn catch_up(identifier: &str, after: u64) -> String {
    let data = serde_json::to_string(&CatchUp {
        action: "catch_up",
        after,
    })
    .expect("plain numbers serialise");
    serde_json::to_string(&Command::Message { identifier, data }).expect("plain strings serialise")
}

#[derive(Serialize)]
struct Action {
    action: &'static str,
}

/// `{"command":"message",…,"data":"{\"action\":\"presence\"}"}`: Hearth's
/// request for the room's presence frame as it stands, which its room page
/// sends after every (re)subscription.
pub fn ask_presence(identifier: &str) -> String {
    let data =
        serde_json::to_string(&Action { action: "presence" }).expect("plain strings serialise");
    serde_json::to_string(&Command::Message { identifier, data }).expect("plain strings serialise")
}

/// The `count` of a Hearth presence frame (`…{"type":"presence","count":N,…`),
/// found without parsing the frame; `None` for any other frame. The
/// identifier, being a JSON string, can only hold those words escaped.
pub fn presence_count(text: &str) -> Option<u64> {
    const HEAD: &[u8] = br#""type":"presence","count":"#;
    let bytes = text.as_bytes();
    let at = memmem::find(bytes, HEAD)?;
    let rest = &bytes[at + HEAD.len()..];
    let (digits, _) = take_digits(rest)?;
    decimal(digits)
}

/// The room `seq` of a Hearth message frame (`…"seq":N…`), found without
/// parsing the frame: the first `"seq":` is the payload's own (the content,
/// being a JSON string, can only hold it escaped).
pub fn room_seq(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let at = memmem::find(bytes, br#""seq":"#)?;
    let rest = &bytes[at + 6..];
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let (digits, _) = take_digits(&rest[start..])?;
    decimal(digits)
}

/// What a server frame means to the load generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    Welcome,
    Ping,
    Confirm,
    Reject,
    /// The server is closing the connection.
    Disconnect {
        reason: String,
    },
    /// A broadcast carrying a bench marker.
    Bench(Marker),
    /// A message with `"type":"error"` (Hearth's answer to a failed speak).
    Error(String),
    /// Hearth's answer to `catch_up` after the replayed messages.
    CaughtUp {
        /// The last `seq` replayed (or `after` when nothing was missed).
        last_seq: u64,
        /// Whether more were missed than one answer carries: ask again.
        more: bool,
    },
    /// Anything else: another broadcast, an unknown frame.
    Other,
}

#[derive(Deserialize)]
struct Control {
    #[serde(rename = "type")]
    kind: Option<String>,
    reason: Option<String>,
    message: Option<serde_json::Value>,
}

impl ServerFrame {
    /// Reads one text frame.
    pub fn parse(text: &str) -> Self {
        if let Some(marker) = Marker::find(text) {
            return Self::Bench(marker);
        }
        let Ok(control) = serde_json::from_str::<Control>(text) else {
            return Self::Other;
        };
        match control.kind.as_deref() {
            Some("welcome") => Self::Welcome,
            Some("ping") => Self::Ping,
            Some("confirm_subscription") => Self::Confirm,
            Some("reject_subscription") => Self::Reject,
            Some("disconnect") => Self::Disconnect {
                reason: control.reason.unwrap_or_default(),
            },
            _ => match control.message {
                Some(serde_json::Value::Object(m))
                    if m.get("type").and_then(|t| t.as_str()) == Some("caught_up") =>
                {
                    match m.get("last_seq").and_then(serde_json::Value::as_u64) {
                        Some(last_seq) => Self::CaughtUp {
                            last_seq,
                            more: m.get("more").and_then(serde_json::Value::as_bool) == Some(true),
                        },
                        None => Self::Other,
                    }
                }
                Some(serde_json::Value::Object(m))
                    if m.get("type").and_then(|t| t.as_str()) == Some("error") =>
                {
                    Self::Error(
                        m.get("error")
                            .and_then(|e| e.as_str())
                            .unwrap_or("error")
                            .to_owned(),
                    )
                }
                _ => Self::Other,
            },
        }
    }
}

/// What a bench message carries in its content: `bench:<run>:<seq>:<unix nanos>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Which run sent it (other runs' messages are ignored).
    pub run: u32,
    /// The message's number within the run, from 0.
    pub seq: u64,
    /// When it was sent, Unix time in nanoseconds.
    pub sent_unix_nanos: u64,
}

const PREFIX: &[u8] = b"bench:";

impl Marker {
    /// The content string.
    pub fn encode(&self) -> String {
        format!(
            "bench:{:08x}:{}:{}",
            self.run, self.seq, self.sent_unix_nanos
        )
    }

    /// The first marker in `text`, if any.
    pub fn find(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        let at = memmem::find(bytes, PREFIX)?;
        let rest = &bytes[at + PREFIX.len()..];
        let (run, rest) = take_field(rest, 16)?;
        let run = u32::from_str_radix(std::str::from_utf8(run).ok()?, 16).ok()?;
        let (seq, rest) = take_field(rest, 10)?;
        let (nanos, _) = take_digits(rest)?;
        Some(Self {
            run,
            seq: decimal(seq)?,
            sent_unix_nanos: decimal(nanos)?,
        })
    }
}

/// Splits `text` at the next `:`; the field must be digits of `radix`.
fn take_field(text: &[u8], radix: u32) -> Option<(&[u8], &[u8])> {
    let end = text.iter().position(|&b| b == b':')?;
    let field = &text[..end];
    if field.is_empty() || !field.iter().all(|&b| (b as char).is_digit(radix)) {
        return None;
    }
    Some((field, &text[end + 1..]))
}

fn take_digits(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = text
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    (end > 0).then(|| text.split_at(end))
}

fn decimal(digits: &[u8]) -> Option<u64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = r#"{"channel":"ChatroomChannel","id":1}"#;

    #[test]
    fn commands_are_what_action_cable_clients_send() {
        assert_eq!(identifier("1"), ID);
        assert_eq!(
            identifier_with("1", true, None),
            r#"{"channel":"ChatroomChannel","id":1,"presence":true}"#
        );
        assert_eq!(
            identifier_with("1", true, Some("html")),
            r#"{"channel":"ChatroomChannel","id":1,"presence":true,"format":"html"}"#
        );
        assert_eq!(identifier_with("1", false, None), ID);
        assert_eq!(
            identifier("lobby"),
            r#"{"channel":"ChatroomChannel","id":"lobby"}"#
        );
        let sub: serde_json::Value = serde_json::from_str(&subscribe(ID)).unwrap();
        assert_eq!(sub["command"], "subscribe");
        assert_eq!(sub["identifier"], ID);
        let speak: serde_json::Value = serde_json::from_str(&speak(ID, "hi \"x\"")).unwrap();
        assert_eq!(speak["command"], "message");
        let data: serde_json::Value =
            serde_json::from_str(speak["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"action": "speak", "content": "hi \"x\""})
        );
    }

    #[test]
    fn markers_round_trip_and_are_found_in_every_servers_frame() {
        let m = Marker {
            run: 0xbeef,
            seq: 42,
            sent_unix_nanos: 1_764_000_000_123_456_789,
        };
        let content = m.encode();
        assert_eq!(content, "bench:0000beef:42:1764000000123456789");
        let hearth = format!(
            r#"{{"identifier":{id:?},"message":{{"type":"message","id":7,"chatroom_id":1,"seq":7,"user_id":2,"nickname":"b","content":"{content}","created_at":"2026-01-01T00:00:00.000Z","html":"<p>{content}</p>"}}}}"#,
            id = ID
        );
        let rails = format!(r#"{{"identifier":{ID:?},"message":{{"content":"{content}"}}}}"#);
        let padded = format!(r#"{{"identifier":{ID:?},"message":{{"content":"{content}:xxxx"}}}}"#);
        for frame in [hearth, rails, padded] {
            assert_eq!(ServerFrame::parse(&frame), ServerFrame::Bench(m));
        }
    }

    #[test]
    fn malformed_markers_are_not_taken_for_bench_messages() {
        for text in [
            "bench:",
            "bench:zz:1:2",
            "bench:0000beef::2",
            "bench:0000beef:1:",
            "bench:0000beef:x:2",
        ] {
            assert_eq!(Marker::find(text), None, "{text}");
        }
    }

    #[test]
    fn catch_up_asks_for_what_came_after_a_seq_and_its_answer_is_read() {
        let request: serde_json::Value = serde_json::from_str(&catch_up(ID, 41)).unwrap();
        assert_eq!(request["command"], "message");
        let data: serde_json::Value =
            serde_json::from_str(request["data"].as_str().unwrap()).unwrap();
        assert_eq!(data, serde_json::json!({"action": "catch_up", "after": 41}));
        assert_eq!(
            ServerFrame::parse(
                r#"{"identifier":"x","message":{"type":"caught_up","last_seq":1041,"more":true}}"#
            ),
            ServerFrame::CaughtUp {
                last_seq: 1041,
                more: true
            }
        );
        assert_eq!(
            ServerFrame::parse(
                r#"{"identifier":"x","message":{"type":"caught_up","last_seq":7,"more":false}}"#
            ),
            ServerFrame::CaughtUp {
                last_seq: 7,
                more: false
            }
        );
    }

    #[test]
    fn the_room_seq_is_read_from_a_message_frame_and_not_from_its_content() {
        let frame = r#"{"identifier":"x","message":{"type":"message","id":9,"chatroom_id":1,"seq":1234,"user_id":2,"nickname":"b","content":"say \"seq\":5","html":"<p></p>"}}"#;
        assert_eq!(room_seq(frame), Some(1234));
        assert_eq!(
            room_seq(
                r#"{"identifier":"x","message":{"type":"caught_up","last_seq":7,"more":false}}"#
            ),
            None
        );
        assert_eq!(room_seq(r#"{"type":"ping","message":17}"#), None);
    }

    #[test]
    fn presence_frames_are_told_by_their_count_and_asked_for_by_action() {
        let frame = r#"{"identifier":"{\"channel\":\"ChatroomChannel\",\"id\":1,\"presence\":true}","message":{"type":"presence","count":1234,"users":[{"id":1,"nickname":"ann"}]}}"#;
        assert_eq!(presence_count(frame), Some(1234));
        let typing = r#"{"identifier":"x","message":{"type":"typing","user_id":2,"nickname":"b"}}"#;
        assert_eq!(presence_count(typing), None);
        let said = r#"{"identifier":"x","message":{"type":"message","content":"say \"type\":\"presence\",\"count\":5"}}"#;
        assert_eq!(presence_count(said), None, "a message's content is escaped");
        let ask: serde_json::Value = serde_json::from_str(&ask_presence(ID)).unwrap();
        assert_eq!(ask["command"], "message");
        assert_eq!(ask["identifier"], ID);
        assert_eq!(ask["data"], r#"{"action":"presence"}"#);
    }

    #[test]
    fn control_frames_are_told_apart() {
        assert_eq!(
            ServerFrame::parse(r#"{"type":"welcome"}"#),
            ServerFrame::Welcome
        );
        assert_eq!(
            ServerFrame::parse(r#"{"type":"ping","message":1764000000}"#),
            ServerFrame::Ping
        );
        // Rails puts the identifier first.
        assert_eq!(
            ServerFrame::parse(r#"{"identifier":"x","type":"confirm_subscription"}"#),
            ServerFrame::Confirm
        );
        assert_eq!(
            ServerFrame::parse(r#"{"type":"reject_subscription","identifier":"x"}"#),
            ServerFrame::Reject
        );
        assert_eq!(
            ServerFrame::parse(r#"{"type":"disconnect","reason":"too_slow","reconnect":true}"#),
            ServerFrame::Disconnect {
                reason: "too_slow".into()
            }
        );
        assert_eq!(
            ServerFrame::parse(
                r#"{"identifier":"x","message":{"type":"error","error":"invalid_content","message":"…"}}"#
            ),
            ServerFrame::Error("invalid_content".into())
        );
        assert_eq!(
            ServerFrame::parse(r#"{"identifier":"x","message":{"content":"hello"}}"#),
            ServerFrame::Other
        );
        assert_eq!(ServerFrame::parse("not json"), ServerFrame::Other);
    }
}
