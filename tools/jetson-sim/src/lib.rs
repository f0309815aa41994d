//! `jetson-sim`: stands in for the SEANO fleet's Jetsons and publishes realistic MQTT
//! telemetry, built from the wire types the gateway decodes with (`seano_wire`), so the two
//! cannot drift apart. It links that crate only, not the gateway.
//!
//! # Layout
//! - [`config`]: [`SimConfig`], one run's settings, with defaults and validation.
//! - [`fleet`]: [`Fleet`], the pure, seeded generator of [`SimMessage`]s (no broker needed).
//! - `boat`: one boat's kinematics, battery, modes, sensors and event log lines.
//! - [`bad`]: [`BadKind`], the malformed messages and the gateway's reason for each.
//! - [`publish`]: [`run`], which publishes a fleet on schedule, counts the PubAcks and has the
//!   boats answer their commands.
//! - `command`: what a boat does with a command and what it answers (pure, seeded).
//! - `link`: the command connection, a persistent MQTT session per fleet.
//! - [`summary`]: [`Summary`], what a run sent, by type, vehicle and bad kind.
//! - [`cli`]: the `jetson-sim` command line, turned into a [`SimConfig`].
//!
//! # Example
//! ```
//! use jetson_sim::{Fleet, SimConfig};
//!
//! let config = SimConfig { seed: Some(7), count: Some(3), ..SimConfig::default() };
//! let messages: Vec<_> = Fleet::new(&config).unwrap().collect();
//! assert_eq!(messages.len(), 3);
//! assert!(messages[0].topic.starts_with("seano/"));
//! ```

pub mod bad;
mod boat;
pub mod cli;
mod command;
pub mod config;
pub mod fleet;
mod link;
pub mod publish;
pub mod summary;

pub use bad::BadKind;
pub use config::{GeoPoint, SimConfig};
pub use fleet::{Fleet, SimMessage};
pub use publish::{run, run_with, RunHooks};
pub use summary::{CommandCounts, FailureCauses, StopReason, Summary, TypeCounts};
pub use tokio_util::sync::CancellationToken;
