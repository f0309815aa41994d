//! `GET /metrics`: the pipeline counters in the Prometheus text exposition format (0.0.4).
//!
//! Rendered on each scrape from the shared [`Metrics`] atomics and the hub's connection count;
//! no task owns anything here.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use actix_web::{web, HttpResponse};

use super::access::FleetAccess;
use super::AppState;
use crate::domain::{MessageType, RejectReason};
use crate::metrics::{Metrics, PerType};

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format: messages by type and outcome, rejections by reason, batches, commit failures, frames sent, slow clients dropped, connections, MQTT and database status, last seq",
        body = String, content_type = "text/plain; version=0.0.4",
        example = "# HELP seano_messages_stored_total Messages committed to the database.\n# TYPE seano_messages_stored_total counter\nseano_messages_stored_total{type=\"vehicle_log\"} 1044\n"),
        (status = 401, description = "Authentication is on and no valid token was given", body = super::error::ErrorBody))
)]
pub async fn metrics(_: FleetAccess, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(render(
        &state.metrics,
        state.hub.connection_count(),
        &state.instance.id,
    ))
}

/// The whole exposition; `connections` is the number of open WebSocket connections. Every
/// sample carries `instance="<INSTANCE_ID>"`, so the series of several instances stay apart.
pub fn render(m: &Metrics, connections: usize, instance: &str) -> String {
    let mut out = Exposition {
        text: String::with_capacity(4096),
        instance: escape_label(instance),
    };
    let per_type = |out: &mut Exposition, name: &str, help: &str, counts: &PerType| {
        out.header(name, help, "counter");
        for kind in MessageType::ALL {
            out.sample(name, &[("type", kind.as_str())], counts.get(kind) as f64);
        }
    };
    per_type(
        &mut out,
        "seano_messages_received_total",
        "Messages decoded from MQTT and handed to the store.",
        &m.received,
    );
    per_type(
        &mut out,
        "seano_messages_stored_total",
        "Messages committed to the database.",
        &m.stored,
    );
    per_type(
        &mut out,
        "seano_messages_broadcast_total",
        "Committed messages fanned out to WebSocket clients (once per message, not per client).",
        &m.broadcast,
    );

    let name = "seano_messages_rejected_total";
    out.header(
        name,
        "MQTT messages rejected (kept in rejected_messages), by reason.",
        "counter",
    );
    for reason in RejectReason::ALL {
        out.sample(
            name,
            &[("reason", reason.as_str())],
            m.rejected(reason) as f64,
        );
    }

    let counters: [(&str, &str, u64); 9] = [
        (
            "seano_batches_committed_total",
            "Store transactions committed.",
            m.batches_committed.load(Relaxed),
        ),
        (
            "seano_commit_failures_total",
            "Store commits that failed (and were retried).",
            m.commit_failures.load(Relaxed),
        ),
        (
            "seano_duplicates_dropped_total",
            "Broker redeliveries recognised as already stored (acknowledged, not stored again).",
            m.duplicates_dropped.load(Relaxed),
        ),
        (
            "seano_acks_stale_total",
            "MQTT acks not sent because their connection had dropped (the broker redelivers).",
            m.acks_stale.load(Relaxed),
        ),
        (
            "seano_ws_frames_sent_total",
            "Frames written to WebSocket clients (data and control).",
            m.frames_sent.load(Relaxed),
        ),
        (
            "seano_ws_slow_clients_dropped_total",
            "WebSocket clients closed (3001): their socket took nothing for WS_STALL_TIMEOUT_SECS, or they fell behind the replay window.",
            m.slow_clients_dropped.load(Relaxed),
        ),
        (
            "seano_ws_clients_caught_up_total",
            "Bursts after which a reading client caught up from the database instead of being disconnected.",
            m.clients_caught_up.load(Relaxed),
        ),
        (
            "seano_commands_accepted_total",
            "Commands accepted: stored and handed to the broker.",
            m.commands_accepted.load(Relaxed),
        ),
        (
            "seano_commands_rate_limited_total",
            "Commands refused by the per-vehicle rate limit (COMMAND_RATE, COMMAND_BURST).",
            m.commands_refused.load(Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        out.header(name, help, "counter");
        out.sample(name, &[], value as f64);
    }

    let gauges: [(&str, &str, f64); 10] = [
        (
            "seano_ws_connections",
            "Open WebSocket connections.",
            connections as f64,
        ),
        (
            "seano_mqtt_connected",
            "1 while the MQTT session is connected.",
            flag(m.mqtt_connected.load(Relaxed)),
        ),
        (
            "seano_mqtt_subscribed",
            "1 when the broker acknowledged the subscriptions on the current connection.",
            flag(m.mqtt_subscribed.load(Relaxed)),
        ),
        (
            "seano_mqtt_running",
            "1 while the ingest task runs.",
            flag(m.mqtt_running.load(Relaxed)),
        ),
        (
            "seano_database_up",
            "0 after a failed commit, until the next one succeeds.",
            flag(m.database_ok.load(Relaxed)),
        ),
        (
            "seano_mqtt_ingest_backlog",
            "Messages taken from the broker and held while the store's queue is full.",
            m.ingest_backlog.load(Relaxed) as f64,
        ),
        (
            "seano_mqtt_acks_owed",
            "Acks of committed messages waiting for room in the MQTT client's request queue.",
            m.acks_owed.load(Relaxed) as f64,
        ),
        (
            "seano_last_seq",
            "The last seq committed by this gateway.",
            m.last_seq.load(Relaxed) as f64,
        ),
        (
            "seano_cluster_messages_read",
            "Messages other instances committed, read back from the database for this instance's clients.",
            m.cluster_read.load(Relaxed) as f64,
        ),
        (
            "seano_start_time_seconds",
            "When the gateway started, in Unix seconds.",
            m.started_at.timestamp_millis() as f64 / 1000.0,
        ),
    ];
    for (name, help, value) in gauges {
        out.header(name, help, "gauge");
        out.sample(name, &[], value);
    }

    for (name, help, h) in [
        (
            "seano_commit_seconds",
            "Seconds to write and commit one batch.",
            &m.commit_seconds,
        ),
        (
            "seano_batch_size",
            "Messages per committed batch.",
            &m.batch_size,
        ),
        (
            "seano_broadcast_lag_seconds",
            "Seconds from receiving a message to queueing its frame for the clients.",
            &m.broadcast_lag_seconds,
        ),
    ] {
        out.histogram(name, help, h);
    }
    out.header(
        "seano_ingest_in_flight",
        "Messages handed to the store and not yet committed.",
        "gauge",
    );
    out.sample(
        "seano_ingest_in_flight",
        &[],
        m.ingest_in_flight
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(0) as f64,
    );

    let name = "seano_build_info";
    out.header(name, "The gateway's version.", "gauge");
    out.sample(name, &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    out.text
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The exposition being written. Every sample carries the instance's label, so the series of
/// several instances stay apart.
struct Exposition {
    text: String,
    /// The escaped INSTANCE_ID.
    instance: String,
}

impl Exposition {
    fn histogram(&mut self, name: &str, help: &str, h: &crate::metrics::Histogram) {
        self.header(name, help, "histogram");
        let (cumulative, sum) = h.snapshot();
        let bucket = format!("{name}_bucket");
        for (bound, count) in h.bounds.iter().zip(&cumulative) {
            self.sample(&bucket, &[("le", &bound.to_string())], *count as f64);
        }
        let total = cumulative.last().copied().unwrap_or(0) as f64;
        self.sample(&bucket, &[("le", "+Inf")], total);
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], total);
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.text, "{name}{{instance=\"{}\"", self.instance);
        for (k, v) in labels {
            let _ = write!(self.text, ",{k}=\"{}\"", escape_label(v));
        }
        let _ = writeln!(self.text, "}} {value}");
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_help_type_and_labelled_samples() {
        let m = Metrics::default();
        m.stored.add(MessageType::VehicleLog, 3);
        m.reject(RejectReason::ALL[0]);
        let text = render(&m, 2, "gw-1");
        assert!(text.contains("# TYPE seano_messages_stored_total counter\n"));
        assert!(text
            .contains("seano_messages_stored_total{instance=\"gw-1\",type=\"vehicle_log\"} 3\n"));
        assert!(text.contains(&format!(
            "seano_messages_rejected_total{{instance=\"gw-1\",reason=\"{}\"}} 1\n",
            RejectReason::ALL[0].as_str()
        )));
        assert!(text.contains("seano_ws_connections{instance=\"gw-1\"} 2\n"));
        // Every sample line is `name{labels} value` with a numeric value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad sample: {line}");
        }
    }
}
