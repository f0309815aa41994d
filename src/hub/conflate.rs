//! `conflate=latest`: instead of being disconnected when it falls behind, a client may ask to
//! skip to the latest message per vehicle, type (and sensor).
//!
//! While such a client's queue is full, the hub parks frames here, one per key, the newest
//! replacing the older (counted as skipped). Once the client's body (`ws::body`) has drained its
//! queue it takes the parked frames, tells the client how many it skipped, and sends them in seq order; the hub uses
//! the queue again as soon as nothing is parked, so the client's order stays seq order.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::{Frame, Frames, QueueTx, Refused};
use crate::domain::MessageType;

/// What a frame is the latest of: vehicle, type, and sensor (its id, or a hash of its code, so
/// the key stays cheap to copy into every client's frame).
pub type ConflationKey = (i64, MessageType, Option<i64>, Option<u64>);

/// The conflation key of a committed message.
pub fn key_of(msg: &crate::domain::StoredMessage) -> ConflationKey {
    // A collision would only merge two sensors' "latest".
    let code_hash = msg
        .sensor_code
        .as_deref()
        .map(|code| crate::domain::fnv1a(code.as_bytes()));
    (msg.vehicle_id, msg.kind, msg.sensor_id, code_hash)
}

/// Frames parked for one client. Nothing signals a parked frame: the hub parks only behind a
/// full queue (or behind frames already parked), and the client's body takes the parked frames
/// each time it has emptied the queue.
#[derive(Default)]
pub struct Conflation {
    state: Mutex<Parked>,
}

#[derive(Default)]
struct Parked {
    frames: HashMap<ConflationKey, Frame>,
    skipped: u64,
}

impl Conflation {
    /// Hub side: queue the run, or park its frames if the client is behind.
    pub fn offer(&self, run: Frames, tx: &QueueTx) -> Result<(), Refused> {
        // unwrap: the lock is never held across a panic (no code here can panic).
        let mut parked = self.state.lock().unwrap();
        let (run, from) = if parked.frames.is_empty() {
            match tx.try_send(run) {
                Err(Refused::Full(run, from)) => (run, from),
                sent => return sent,
            }
        } else {
            (run, 0)
        };
        for frame in &run[from..] {
            if parked.frames.insert(frame.key, frame.clone()).is_some() {
                parked.skipped += 1;
            }
        }
        Ok(())
    }

    /// The client's side: the parked frames in seq order and how many were skipped since the
    /// last take, if its queue is empty. The hub queues and parks under this lock, so with the
    /// queue empty here every parked frame is newer than anything queued, and the hub queues
    /// again only after they are taken. `None`: frames were queued meanwhile; take those first.
    pub fn take(&self, queue: &mpsc::UnboundedReceiver<Frames>) -> Option<(Vec<Frame>, u64)> {
        // unwrap: see `offer`.
        let mut parked = self.state.lock().unwrap();
        if !queue.is_empty() {
            return None;
        }
        let mut frames: Vec<Frame> = parked.frames.drain().map(|(_, f)| f).collect();
        frames.sort_by_key(|f| f.seq);
        Some((frames, std::mem::take(&mut parked.skipped)))
    }
}
