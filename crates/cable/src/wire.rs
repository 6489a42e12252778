//! Server frames on the wire, and the one write path of every session.
//!
//! Reading stays with tungstenite (unmasking, fragments, control frames,
//! size limits). Writing is done here by hand, because the fan-out is the hot
//! path and measurement showed the library's costs there (BENCHMARKS.md,
//! "Why Hearth misses"): tungstenite copies every frame into each
//! connection's write buffer and drives a `Sink` per frame. Here a broadcast's
//! frame — WebSocket header included — is encoded once, shared by every
//! subscriber, and whatever is queued for a connection leaves in one
//! vectored write of those shared bytes.
//!
//! Server frames are never masked (RFC 6455 §5.1) and never fragmented, so a
//! frame is a 2-, 4- or 10-byte header followed by the payload.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::ops::Deref;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Opcode of a text frame, with FIN set.
const FIN_TEXT: u8 = 0x81;
/// Opcode of a close frame, with FIN set.
const FIN_CLOSE: u8 = 0x88;
/// The longest close reason: a control frame's payload is at most 125 bytes,
/// two of which are the code.
const MAX_CLOSE_REASON: usize = 123;

/// Most slices handed to one `writev` (Linux's `IOV_MAX` is 1024).
const MAX_SLICES: usize = 512;
/// Frames a drained [`Pending`] may keep room for.
const IDLE_CAPACITY: usize = 8;

/// A complete server text frame carrying `payload`.
pub fn text(payload: &str) -> Bytes {
    frame(FIN_TEXT, payload.as_bytes())
}

/// A complete close frame with `code` and a reason (cut to fit a control frame).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(FIN_CLOSE, &payload)
}

fn frame(first: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    out.put_u8(first);
    match payload.len() {
        n if n < 126 => out.put_u8(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.put_slice(payload);
    out.freeze()
}

/// The payload of a frame made by [`text`] or [`close`].
pub fn payload(frame: &[u8]) -> &[u8] {
    let header = match frame.get(1) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => return &[],
    };
    frame.get(header..).unwrap_or(&[])
}

/// Frames waiting to be written to one socket, and how far the first one got.
///
/// [`Pending::write_to`] may be cancelled at any await (a session races its
/// writes against its queue overflowing): the state changes only after a
/// write returned, so whatever was cut off mid-frame is finished by the next
/// call, and the stream never carries half a frame followed by another.
#[derive(Debug)]
pub struct Pending<T> {
    frames: VecDeque<T>,
    /// Bytes of the first frame already written.
    sent: usize,
    /// Bytes not yet written, over all frames: what the session's send
    /// budget counts.
    unwritten: usize,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Self {
            frames: VecDeque::new(),
            sent: 0,
            unwritten: 0,
        }
    }
}

impl<T> Pending<T>
where
    T: Deref,
    T::Target: AsRef<[u8]>,
{
    /// Queues a complete frame after the others.
    pub fn push(&mut self, frame: T) {
        self.unwritten += frame.deref().as_ref().len();
        self.frames.push_back(frame);
    }

    /// Drops every frame not yet begun; a frame cut off mid-way stays, so
    /// the stream can still be ended cleanly.
    pub fn discard_unstarted(&mut self) {
        let keep = usize::from(self.sent > 0);
        self.frames.truncate(keep);
        self.unwritten = self
            .frames
            .front()
            .map_or(0, |first| first.deref().as_ref().len() - self.sent);
    }

    /// Bytes not yet written.
    pub fn unwritten(&self) -> usize {
        self.unwritten
    }

    /// Frames not yet completely written.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether everything has been written.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Writes every pending frame, in order, in as few `writev` calls as the
    /// socket allows, then flushes.
    pub async fn write_to<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> io::Result<()> {
        while !self.frames.is_empty() {
            let written = {
                let mut slices: Vec<IoSlice<'_>> =
                    Vec::with_capacity(self.frames.len().min(MAX_SLICES));
                for (i, frame) in self.frames.iter().take(MAX_SLICES).enumerate() {
                    let bytes = frame.deref().as_ref();
                    slices.push(IoSlice::new(if i == 0 {
                        &bytes[self.sent..]
                    } else {
                        bytes
                    }));
                }
                io.write_vectored(&slices).await?
            };
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.consume(written);
        }
        // A burst leaves a large ring behind; an idle connection keeps none.
        if self.frames.capacity() > IDLE_CAPACITY {
            self.frames = VecDeque::new();
        }
        io.flush().await
    }

    fn consume(&mut self, mut written: usize) {
        self.unwritten -= written;
        while let Some(first) = self.frames.front() {
            let left = first.deref().as_ref().len() - self.sent;
            if written < left {
                self.sent += written;
                return;
            }
            written -= left;
            self.sent = 0;
            self.frames.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    #[test]
    fn headers_carry_each_length_form() {
        let short = text("hi");
        assert_eq!(&short[..], b"\x81\x02hi");
        let medium = "m".repeat(126);
        let framed = text(&medium);
        assert_eq!(&framed[..4], &[0x81, 126, 0, 126]);
        assert_eq!(payload(&framed), medium.as_bytes());
        let long = "l".repeat(70_000);
        let framed = text(&long);
        assert_eq!(framed[1], 127);
        assert_eq!(&framed[2..10], &70_000u64.to_be_bytes());
        assert_eq!(payload(&framed), long.as_bytes());
        assert_eq!(payload(&text("")), b"");
    }

    #[test]
    fn close_frames_fit_a_control_frame() {
        let framed = close(1009, "too big");
        assert_eq!(&framed[..2], &[0x88, 9]);
        assert_eq!(&framed[2..4], &1009u16.to_be_bytes());
        assert_eq!(&framed[4..], b"too big");
        let long = "é".repeat(100);
        let framed = close(1000, &long);
        assert!(framed.len() <= 2 + 125);
        assert!(std::str::from_utf8(&payload(&framed)[2..]).is_ok());
    }

    /// Accepts at most `step` bytes per call, so frames are split; once it
    /// holds `block_after` bytes it blocks (returns `Pending`) until that is lifted.
    struct Sink {
        out: Vec<u8>,
        step: usize,
        block_after: Option<usize>,
    }

    impl Sink {
        fn new(step: usize, block_after: Option<usize>) -> Self {
            Self {
                out: Vec::new(),
                step,
                block_after,
            }
        }
    }

    impl AsyncWrite for Sink {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self
                .block_after
                .is_some_and(|limit| self.out.len() >= limit)
            {
                return Poll::Pending;
            }
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn partial_writes_resume_where_they_stopped() {
        let frames: Vec<Bytes> = (0..1_200).map(|i| text(&format!("frame {i}"))).collect();
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        let mut sink = Sink::new(7, None);
        let mut pending = Pending::default();
        for frame in &frames {
            pending.push(frame.clone());
        }
        assert_eq!(pending.unwritten(), expected.len());
        pending.write_to(&mut sink).await.unwrap();
        assert_eq!(sink.out, expected);
        assert!(pending.is_empty());
        assert_eq!(pending.unwritten(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_write_is_finished_before_later_frames() {
        let mut io = Sink::new(5, Some(5));
        let mut pending = Pending::default();
        pending.push(text("first frame"));
        let cut = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            pending.write_to(&mut io),
        )
        .await;
        assert!(cut.is_err(), "the sink holds the write");
        assert_eq!(io.out.len(), 5);
        pending.push(text("never begun"));
        pending.discard_unstarted();
        assert_eq!(pending.len(), 1, "the frame cut off mid-way stays");
        assert_eq!(pending.unwritten(), text("first frame").len() - 5);
        pending.push(close(1000, ""));
        io.block_after = None;
        io.step = usize::MAX;
        pending.write_to(&mut io).await.unwrap();
        let mut expected = text("first frame").to_vec();
        expected.extend_from_slice(&close(1000, ""));
        assert_eq!(io.out, expected);
    }
}
