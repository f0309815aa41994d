//! WebSocket sessions: the per-connection loop that forwards hub frames, answers client frames,
//! pings and enforces liveness and limits, and the streams' query parameters. The frames
//! themselves are `seano_wire::frame`'s.

pub mod body;
pub mod protocol;
pub mod session;

pub use session::{Opening, SessionConfig, SessionContext};
