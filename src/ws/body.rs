//! The response body of a WebSocket connection: what actix writes to the socket.
//!
//! Live frames go from the hub's queue for this client straight into this body, which actix's
//! dispatcher polls: one task wake-up per frame, and every frame that is ready when the socket
//! can take more is encoded into one buffer and written with one `write()`. The session task
//! keeps the reading side, pings, replay, catch-up and close codes; what it sends comes through
//! a small bounded channel ([`Out`]), so a client that does not read holds it back.
//!
//! The seam between replay and live is kept here: live frames are taken only after the session
//! has sent its replay and said from which seq on ([`Out::Live`]), and those up to it are
//! skipped. When the hub stops queueing for a lagging client, the session asks the body to
//! [`Out::Pause`] once the queue is empty, which returns the last seq written: the session
//! catches up from the database after it.

use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_http::ws::{CloseReason, OpCode, Parser};
use actix_web::body::{BodySize, BoxBody, MessageBody};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use tokio::sync::{mpsc, oneshot, Notify};

use super::protocol;
use crate::hub::{Frames, Queue};
use crate::metrics::Metrics;

/// What the session sends through the body.
pub enum Out {
    Text(ByteString),
    Ping,
    Pong(Bytes),
    /// The last frame: the body ends after it.
    Close(Option<CloseReason>),
    /// Take live frames from the hub queue from now on, skipping those up to `after`. The queue
    /// is given with the first `Live`.
    Live {
        after: i64,
        queue: Option<Queue>,
    },
    /// Stop taking live frames once the hub queue is empty, and answer with the last seq
    /// written (or skipped as already sent).
    Pause(oneshot::Sender<i64>),
}

/// Bytes encoded in one poll at most before they are handed to actix to write.
const CHUNK: usize = 64 * 1024;

/// RFC 6455: a control frame's payload is at most 125 bytes, a close reason 123.
const MAX_CLOSE_REASON: usize = 123;

pub struct FrameBody {
    /// Boxed: tokio allocates a channel's first block of 32 slots up front, and an idle
    /// connection then holds 32 pointers instead of 32 `Out`s (1.3 KB).
    control: mpsc::Receiver<Box<Out>>,
    queue: Option<Queue>,
    /// The run being written, and how far: a run larger than one chunk is written over several.
    run: Option<(Frames, usize)>,
    /// Live frames are taken from the queue.
    live: bool,
    /// Live frames up to this seq are skipped: they were replayed or already written.
    cursor: i64,
    /// Answered once the queue is empty.
    pause: Option<oneshot::Sender<i64>>,
    /// The hub has ended and every frame it queued is written.
    hub_ended: Arc<Notify>,
    closing: bool,
    buf: BytesMut,
    metrics: Arc<Metrics>,
    /// actix-ws's own body, never polled: the message stream ends when it is dropped, which is
    /// when this body is (the connection is gone).
    _reader_signal: BoxBody,
}

/// The session's handle on its body.
pub struct BodyHandle {
    pub out: mpsc::Sender<Box<Out>>,
    /// Notified once the hub has ended and everything it queued for this client is written.
    pub hub_ended: Arc<Notify>,
}

impl FrameBody {
    pub fn new(metrics: Arc<Metrics>, reader_signal: BoxBody) -> (FrameBody, BodyHandle) {
        let (out, control) = mpsc::channel(32);
        let hub_ended = Arc::new(Notify::new());
        let body = FrameBody {
            control,
            queue: None,
            run: None,
            live: false,
            cursor: 0,
            pause: None,
            hub_ended: hub_ended.clone(),
            closing: false,
            buf: BytesMut::new(),
            metrics,
            _reader_signal: reader_signal,
        };
        (body, BodyHandle { out, hub_ended })
    }

    /// Encodes what the session sent; false once nothing more will come from it.
    fn take_control(&mut self, cx: &mut Context<'_>) -> bool {
        while self.buf.len() < CHUNK {
            match self.control.poll_recv(cx) {
                Poll::Ready(Some(out)) => match *out {
                    Out::Text(text) => {
                        write_text(&mut self.buf, text.as_bytes());
                        self.metrics.frames_sent.inc();
                    }
                    Out::Ping => {
                        Parser::write_message(&mut self.buf, b"", OpCode::Ping, true, false)
                    }
                    Out::Pong(bytes) => {
                        let bytes = &bytes[..bytes.len().min(125)];
                        Parser::write_message(&mut self.buf, bytes, OpCode::Pong, true, false)
                    }
                    Out::Close(mut reason) => {
                        if let Some(desc) = reason.as_mut().and_then(|r| r.description.as_mut()) {
                            let mut end = desc.len().min(MAX_CLOSE_REASON);
                            while !desc.is_char_boundary(end) {
                                end -= 1;
                            }
                            desc.truncate(end);
                        }
                        Parser::write_close(&mut self.buf, reason, false);
                        self.closing = true;
                        self.control.close();
                        return false;
                    }
                    Out::Live { after, queue } => {
                        if queue.is_some() {
                            self.queue = queue;
                        }
                        self.cursor = self.cursor.max(after);
                        self.live = true;
                    }
                    Out::Pause(reply) => self.pause = Some(reply),
                },
                // The session has ended without a close frame (the client went away).
                Poll::Ready(None) => {
                    self.closing = true;
                    return false;
                }
                Poll::Pending => return true,
            }
        }
        true
    }

    /// Encodes the live frames that are ready.
    fn take_live(&mut self, cx: &mut Context<'_>) {
        let Some(queue) = self.queue.as_mut().filter(|_| self.live) else {
            // Not taking live frames: nothing more will be written from the queue.
            self.answer_pause();
            return;
        };
        let mut sent = 0;
        let mut taken = 0;
        let mut ended = false;
        let mut drained = false;
        while self.buf.len() < CHUNK {
            if let Some((run, at)) = &mut self.run {
                while *at < run.len() && self.buf.len() < CHUNK {
                    let frame = &run[*at];
                    *at += 1;
                    taken += 1;
                    if frame.seq > self.cursor {
                        write_text(&mut self.buf, frame.bytes.as_bytes());
                        self.cursor = frame.seq;
                        sent += 1;
                    }
                }
                if *at < run.len() {
                    // The buffer is full; the rest of the run goes with the next chunk.
                    break;
                }
                self.run = None;
            }
            match queue.frames.poll_recv(cx) {
                Poll::Ready(Some(run)) => {
                    self.run = Some((run, 0));
                    continue;
                }
                Poll::Ready(None) => ended = true,
                // Not empty: tokio's cooperative budget ran out with frames still queued, and
                // it has already arranged for this body to be polled again.
                Poll::Pending if !queue.frames.is_empty() => break,
                Poll::Pending => {}
            }
            // The queue is empty (or closed): the frames parked for a `conflate=latest` client
            // are newer than anything queued. A frame parked after this is parked behind a
            // full queue, whose frames wake this body.
            if let Some(conflation) = &queue.conflation {
                let Some((frames, skipped)) = conflation.take(&queue.frames) else {
                    // The hub queued frames meanwhile: those come first.
                    continue;
                };
                if skipped > 0 {
                    self.metrics.frames_conflated.inc_by(skipped);
                    write_text(&mut self.buf, protocol::conflated(skipped).as_bytes());
                    sent += 1;
                }
                for frame in frames {
                    if frame.seq > self.cursor {
                        write_text(&mut self.buf, frame.bytes.as_bytes());
                        self.cursor = frame.seq;
                        sent += 1;
                    }
                }
            }
            if ended {
                // The hub has ended: what it queued and parked was the last of the stream.
                self.live = false;
                self.hub_ended.notify_one();
            }
            drained = true;
            break;
        }
        if taken > 0 {
            queue.queued.fetch_sub(taken, Relaxed);
        }
        if sent > 0 {
            self.metrics.frames_sent.inc_by(sent);
        }
        if drained {
            self.answer_pause();
        }
    }

    fn answer_pause(&mut self) {
        if let Some(reply) = self.pause.take() {
            self.live = false;
            let _ = reply.send(self.cursor);
        }
    }

    fn chunk(&mut self) -> Option<Bytes> {
        // `split` keeps the allocation's remainder for the next frames of a burst; a remainder
        // under 512 bytes is let go, so a connection that only got small frames holds none.
        (!self.buf.is_empty()).then(|| {
            let chunk = self.buf.split().freeze();
            if self.buf.capacity() < 512 {
                self.buf = BytesMut::new();
            }
            chunk
        })
    }
}

impl MessageBody for FrameBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        if !this.closing && this.take_control(cx) {
            this.take_live(cx);
        }
        match this.chunk() {
            Some(chunk) => Poll::Ready(Some(Ok(chunk))),
            None if this.closing => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

fn write_text(buf: &mut BytesMut, text: &[u8]) {
    Parser::write_message(buf, text, OpCode::Text, true, false);
}
