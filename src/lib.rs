//! SEANO telemetry gateway: vehicles publish over MQTT, the gateway stores every message with
//! sea-orm, and only after commit streams it over WebSocket to dashboards.
//!
//! # Layout
//! - [`auth`]: tokens, JWTs, vehicle scopes and the Origin allow-list.
//! - [`config`]: settings from flags, environment and `.env`.
//! - [`startup`]: builds and runs the application; graceful shutdown.
//! - [`domain`]: wire types, topic parsing, payload validation (shared with the simulator).
//! - [`mqtt`]: the ingest task (rumqttc) and the embedded broker (rumqttd).
//! - [`store`]: the batching writer task (sea-orm) and the connection.
//! - [`hub`]: fan-out of committed messages to clients, with per-client bounded queues.
//! - [`ws`]: one WebSocket session loop and the protocol's frames.
//! - [`http`]: the route table and who may call each route, the access extractors, one file per
//!   resource, the error type.
//! - [`metrics`]: counters shared by all tasks.
//!
//! # Data flow
//! `mqtt` (poll, decode) → bounded queue → `store` (batch, commit) → `hub` (serialize once,
//! try_send to each client) → `ws` session → socket. The store acks to the broker after commit.

pub mod auth;
pub mod config;
pub mod domain;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod mqtt;
pub mod startup;
pub mod store;
pub mod ws;
