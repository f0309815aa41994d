//! Integration tests: the real server on port 0, a real broker, a real database.
//!
//! By default each test gets an embedded broker and a SQLite file of its own. With
//! `TEST_DATABASE_URL=postgres://...` each test gets its own PostgreSQL database, and with
//! `TEST_MQTT_URL=mqtt://...` they share that broker under a topic prefix of their own.

mod helpers;

mod access;
mod auth;
mod cluster;
mod commands;
mod config;
mod crash;
mod disk;
mod faults;
mod identity;
mod ingest;
mod metrics;
mod naming;
mod openapi;
mod pressure;
mod rejected;
mod rest;
mod resume;
mod retention;
mod shutdown;
mod simulator;
mod streams;
mod tls;
