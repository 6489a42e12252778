//! The publisher: the steady stream of messages, over HTTP posts or cable
//! `speak`s, on a schedule shared between publishers.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;

use crate::cable::Ws;
use crate::cli::{SoakArgs, Via};
use crate::hearth;
use crate::http::HttpConn;
use crate::net::Endpoint;
use crate::protocol::{self, Marker, ServerFrame};
use crate::run::Ctx;
use crate::stats::{Histogram, Merge, merge_fields};
use crate::workers::unix_nanos;

/// What the publisher did (first process only).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct Published {
    /// Posts answered 201, or speak frames written.
    pub sent: u64,
    /// Posts answered otherwise or not at all, speaks not written, error replies.
    pub failed: u64,
    pub first_failure: Option<String>,
    /// How long each HTTP post took to be answered, µs.
    pub post_latency: Histogram,
}

impl Merge for Published {
    fn merge(&mut self, other: &Self) {
        merge_fields!(self, other; sent, failed, first_failure, post_latency);
    }
}

/// When each message of the steady stream is due, and which are one publisher's.
#[derive(Debug, Clone, Copy)]
pub(super) struct Schedule {
    pub started: Instant,
    pub deadline: Instant,
    pub rate: f64,
    /// This publisher sends messages `first`, `first + every`, …
    pub first: u64,
    pub every: u64,
    pub run: u32,
}

impl Schedule {
    /// Message `k` is due `k / rate` seconds after the start.
    fn due(&self, k: u64) -> Instant {
        self.started + Duration::from_secs_f64(k as f64 / self.rate.max(1e-3))
    }

    /// This publisher's messages due before the deadline; a publisher that
    /// fell behind stops at the deadline all the same.
    fn mine(self) -> impl Iterator<Item = u64> {
        (self.first..)
            .step_by(self.every.max(1) as usize)
            .take_while(move |&k| self.due(k) < self.deadline && Instant::now() < self.deadline)
    }
}

/// The steady stream's source.
pub(super) enum Publisher {
    /// A keep-alive connection (reopened after an error), its cookie and path.
    Http {
        conn: HttpConn,
        endpoint: Endpoint,
        source: std::net::IpAddr,
        cookie: String,
        path: String,
    },
    /// A subscribed cable and its identifier.
    Speak(Ws, String),
}

impl Publisher {
    pub(super) async fn connect(
        ctx: &Ctx,
        args: &SoakArgs,
        identifier: &str,
        p: usize,
    ) -> anyhow::Result<Self> {
        let source = ctx.source(args.clients + ctx.share.of + 1 + p);
        Ok(match args.via {
            Via::Http => Publisher::Http {
                conn: HttpConn::connect(&ctx.endpoint, source).await?,
                endpoint: ctx.endpoint.clone(),
                source,
                cookie: format!("hearth_session={}", ctx.setup.cookie(p).expect("signed in")),
                path: format!("/chatrooms/{}/messages", ctx.setup.room),
            },
            Via::Speak => Publisher::Speak(
                ctx.cable
                    .join(
                        source,
                        ctx.setup.cookie(p),
                        identifier,
                        ctx.connect_timeout(),
                    )
                    .await?,
                identifier.to_owned(),
            ),
        })
    }

    /// Publishes its share of the schedule.
    pub(super) async fn publish(self, schedule: Schedule) -> Published {
        let mut out = Published::default();
        let content = |k: u64| {
            Marker {
                run: schedule.run,
                seq: k,
                sent_unix_nanos: unix_nanos(),
            }
            .encode()
        };
        let fail = |out: &mut Published, why: String| {
            out.failed += 1;
            out.first_failure.get_or_insert(why);
        };
        match self {
            Publisher::Http {
                mut conn,
                endpoint,
                source,
                cookie,
                path,
            } => {
                for k in schedule.mine() {
                    tokio::time::sleep_until(schedule.due(k).into()).await;
                    let sent = Instant::now();
                    match hearth::post_message(&mut conn, &cookie, &path, &content(k)).await {
                        Ok(201) => {
                            out.sent += 1;
                            out.post_latency.record(sent.elapsed().as_micros() as u64);
                        }
                        Ok(status) => fail(&mut out, format!("answered {status}")),
                        Err(e) => {
                            fail(&mut out, format!("{e:#}"));
                            if let Ok(fresh) = HttpConn::connect(&endpoint, source).await {
                                conn = fresh;
                            }
                        }
                    }
                }
            }
            Publisher::Speak(ws, identifier) => {
                let (mut sink, mut stream) = ws.split();
                // The speaker is subscribed too: read what it receives, so
                // it is never too slow, and count error answers.
                let reader = tokio::spawn(async move {
                    let mut errors = (0u64, None);
                    while let Some(Ok(frame)) = stream.next().await {
                        if let Message::Text(text) = frame
                            && let ServerFrame::Error(e) = ServerFrame::parse(&text)
                        {
                            errors.0 += 1;
                            errors.1.get_or_insert(e);
                        }
                    }
                    errors
                });
                for k in schedule.mine() {
                    tokio::time::sleep_until(schedule.due(k).into()).await;
                    let frame = protocol::speak(&identifier, &content(k));
                    match sink.send(Message::text(frame)).await {
                        Ok(()) => out.sent += 1,
                        Err(e) => fail(&mut out, e.to_string()),
                    }
                }
                // Error answers come within a moment of their speak.
                tokio::time::sleep(Duration::from_secs(2)).await;
                let _ = sink.close().await;
                reader.abort();
                if let Ok((errors, first)) = reader.await {
                    out.failed += errors;
                    out.sent -= errors.min(out.sent);
                    if let Some(e) = first {
                        out.first_failure.get_or_insert(e);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishers_share_the_stream_and_stop_at_the_deadline() {
        let started = Instant::now();
        let schedule = |first| Schedule {
            started,
            deadline: started + Duration::from_secs(60),
            rate: 0.2,
            first,
            every: 3,
            run: 1,
        };
        // 0.2 a second for 60 s: messages 0..=11, every third to each.
        assert_eq!(schedule(0).mine().collect::<Vec<_>>(), [0, 3, 6, 9]);
        assert_eq!(schedule(2).mine().collect::<Vec<_>>(), [2, 5, 8, 11]);
        assert_eq!(schedule(0).due(5), started + Duration::from_secs(25));
    }
}
