//! SEANO telemetry gateway: vehicles publish over MQTT, the gateway stores every message with
//! sea-orm, and only after commit streams it over WebSocket to dashboards.
//!
//! # Layout
//! - `seano_wire` (`src/wire/`, a crate of its own): the one definition of the wire: topics,
//!   payloads and their validation, the vehicle-state field list, every WebSocket frame.
//! - [`auth`]: tokens, JWTs (a shared secret, or the identity provider's keys that the JWKS task
//!   keeps), vehicle scopes and the Origin allow-list.
//! - [`cluster`]: several instances on one broker and one PostgreSQL: the sequencer that feeds
//!   the hub every instance's commits in seq order, LISTEN/NOTIFY wake-ups, heartbeats.
//! - [`commands`]: commands to vehicles: accepted, stored, published, followed to a final
//!   state; each state change a stored `command_status` message with a seq.
//! - [`config`]: settings from flags, environment and `.env`.
//! - [`startup`]: builds and runs the application; graceful shutdown.
//! - [`domain`]: the committed message the store hands the hub; the wire types, re-exported.
//! - [`mqtt`]: the ingest task (rumqttc) and the MQTT session's rules (packet ids, connections,
//!   acks), and the embedded broker (rumqttd).
//! - [`store`]: the batching writer task (sea-orm), replay and REST queries, the connection,
//!   the per-minute rollups and bucketed history.
//! - [`retention`]: how long each table keeps its rows; the purge task and the marks that
//!   say where history now begins.
//! - [`hub`]: fan-out of committed messages to clients, with per-client bounded queues, and the
//!   replay ring of the last committed frames.
//! - [`ws`]: one WebSocket session loop; the stream query parameters.
//! - [`http`]: the route table and who may call each route, the access extractors, one file per
//!   resource, the documents, the error type.
//! - [`metrics`]: figures every task reports (no control state passes through them).
//!
//! # Data flow
//! `mqtt` (poll, decode) → bounded queue → `store` (batch, commit) → `hub` (serialize once,
//! try_send to each client) → `ws` session → socket. The store hands each committed message's
//! receipt back to `mqtt`, which acknowledges it to the broker. The store and `commands` hand
//! their commits to `cluster`'s sequencer, which adds the other instances' (in a shared group)
//! and feeds the hub every seq in order. Commands go `commands` → `mqtt` (publish) → boat; the
//! boat's ack comes back through `mqtt` → `store` like telemetry.

pub mod auth;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod domain;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod mqtt;
pub mod retention;
pub mod startup;
pub mod store;
pub mod ws;
