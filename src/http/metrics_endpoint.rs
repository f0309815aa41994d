//! `GET /metrics`: every figure of the shared [`Metrics`](crate::metrics::Metrics) registry, in the Prometheus text
//! exposition format (0.0.4), encoded by the `prometheus` crate on each scrape; no task owns
//! anything here.

use actix_web::{web, HttpResponse};

use super::access::FleetAccess;
use super::{ApiError, AppState};

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format: messages by type and outcome, rejections by reason, batches, commit latency and batch size histograms, broadcast lag, commit failures, frames sent, slow clients dropped, connections, MQTT and database status, last seq, and the process's CPU, memory and file descriptors; every sample carries `instance`",
        body = String, content_type = "text/plain; version=0.0.4",
        example = "# HELP seano_messages_stored_total Messages committed to the database.\n# TYPE seano_messages_stored_total counter\nseano_messages_stored_total{instance=\"gw-1\",type=\"vehicle_log\"} 1044\n"),
        (status = 401, description = "Authentication is on and no valid token was given", body = super::error::ErrorBody))
)]
pub async fn metrics(_: FleetAccess, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state
        .metrics
        .encode(state.hub.connection_count())
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("encoding the metrics")))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(text))
}

#[cfg(test)]
mod tests {
    use crate::domain::{MessageType, RejectReason};
    use crate::metrics::Metrics;

    #[test]
    fn exposition_has_help_type_and_labelled_samples() {
        let m = Metrics::new("gw-1");
        m.stored.add(MessageType::VehicleLog, 3);
        m.reject(RejectReason::ALL[0]);
        let text = m.encode(2).unwrap();
        assert!(text.contains("# TYPE seano_messages_stored_total counter\n"));
        assert!(text
            .contains("seano_messages_stored_total{instance=\"gw-1\",type=\"vehicle_log\"} 3\n"));
        assert!(text.contains(&format!(
            "seano_messages_rejected_total{{instance=\"gw-1\",reason=\"{}\"}} 1\n",
            RejectReason::ALL[0].as_str()
        )));
        assert!(text.contains("seano_ws_connections{instance=\"gw-1\"} 2\n"));
        assert!(text.contains("seano_build_info{instance=\"gw-1\",version=\""));
        assert!(text.contains("seano_commit_seconds_bucket{instance=\"gw-1\",le=\"0.0005\"} 0\n"));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes{instance=\"gw-1\"} "));
        // Every sample line is `name{labels} value` with a numeric value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad sample: {line}");
        }
    }

    #[test]
    fn stats_and_exposition_read_the_same_counters() {
        let m = Metrics::new("gw-1");
        m.frames_sent.inc_by(5);
        m.mqtt_connected.set(true);
        assert_eq!(m.pipeline().frames_sent, 5);
        let text = m.encode(0).unwrap();
        assert!(text.contains("seano_ws_frames_sent_total{instance=\"gw-1\"} 5\n"));
        assert!(text.contains("seano_mqtt_connected{instance=\"gw-1\"} 1\n"));
    }

    #[test]
    fn instance_label_values_are_escaped() {
        let text = Metrics::new("a\"b\\c").encode(0).unwrap();
        assert!(text.contains("seano_last_seq{instance=\"a\\\"b\\\\c\"} 0\n"));
    }
}
