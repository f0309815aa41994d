//! WebSocket sessions: the protocol's client frames and control frames, and the per-connection
//! loop that forwards hub frames, answers pings and enforces liveness and limits.

pub mod protocol;
pub mod session;

pub use session::{Opening, SessionConfig, SessionContext};
