//! The REST API on the real server: vehicles, history paged by seq, tracks, metrics, the
//! dashboard's files, and a 400 naming the parameter for every bad one.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, wait_for, TestApp};

/// A data frame without its live-only fields: what a history item must equal.
fn without_live_fields(mut frame: Value) -> Value {
    let obj = frame.as_object_mut().unwrap();
    obj.remove("broadcast_time");
    obj.remove("connection_count");
    frame
}

async fn get_text(app: &TestApp, path: &str) -> (u16, String, String) {
    let mut resp = app
        .http
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .expect("HTTP request");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp
        .body()
        .limit(16 * 1024 * 1024)
        .await
        .expect("HTTP body");
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[actix_web::test]
async fn vehicles_list_first_and_last_seen_and_the_latest_vehicle_log() {
    let mut app = spawn_app().await;
    app.publish("1/vehicle_log", r#"{"mode":"AUTO","battery_voltage":12.1}"#)
        .await;
    let latest = json!({"mode": "GUIDED", "battery_voltage": 12.4, "armed": true, "rssi": -38,
                        "latitude": -6.2088, "longitude": 106.8456, "water_temp": 27.5,
                        "payload": {"winch": "up"}});
    app.publish("1/vehicle_log", latest.to_string()).await;
    app.publish("2/raw_log", "GPS initialized successfully")
        .await;
    app.wait_rows("vehicle_logs", 2).await;
    app.wait_rows("raw_logs", 1).await;

    let (status, body) = app.get("/api/vehicles").await;
    assert_eq!(status, 200);
    let vehicles = body["vehicles"].as_array().unwrap();
    assert_eq!(vehicles.len(), 2);
    let one = &vehicles[0];
    assert_eq!(one["id"], 1);
    assert_eq!(
        one["latest_vehicle_log"]["data"], latest,
        "typed fields and extras"
    );
    assert!(one["latest_vehicle_log"]["seq"].as_i64().unwrap() > 0);
    let first = one["first_seen_at"].as_str().unwrap();
    let last = one["last_seen_at"].as_str().unwrap();
    assert!(first.ends_with('Z') && first <= last, "{first} <= {last}");
    assert_eq!(vehicles[1]["id"], 2);
    assert_eq!(vehicles[1]["latest_vehicle_log"], Value::Null);

    let (status, body) = app.get("/api/vehicles/1").await;
    assert_eq!(status, 200);
    assert_eq!(&body, one);
    app.stop().await;
}

#[actix_web::test]
async fn an_unknown_vehicle_is_a_json_404() {
    let mut app = spawn_app().await;
    for path in [
        "/api/vehicles/42",
        "/api/vehicles/42/raw_log",
        "/api/vehicles/42/track",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"], "not_found", "{path}");
        assert_eq!(body["message"], "vehicle 42 not found", "{path}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn history_items_equal_the_live_frames_of_every_type() {
    let mut app = spawn_app().await;
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;
    app.publish("3/raw_log", "Mission started").await;
    app.publish(
        "3/sensor_log",
        r#"{"sensor_id":5,"data":{"temperature":28.5,"ph":7.1},"timestamp":"2025-10-18T16:30:00.123Z"}"#,
    )
    .await;
    app.publish(
        "3/vehicle_log",
        r#"{"battery_voltage":12.4,"mode":"GUIDED","armed":true,"gps_fix":3,"extra_field":[1,2],"timestamp":"2025-10-18T23:30:00.5+07:00"}"#,
    )
    .await;
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(without_live_fields(ws.next_data().await));
    }

    for frame in live {
        let kind = frame["type"].as_str().unwrap();
        let (status, page) = app.get(&format!("/api/vehicles/3/{kind}")).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["items"], json!([frame]), "{kind}");
        assert_eq!(page["type"], kind);
        assert_eq!(page["has_more"], false);
    }
    app.stop().await;
}

#[actix_web::test]
async fn history_pages_by_seq_both_ways_and_the_stream_continues_from_live_since() {
    let mut app = spawn_app().await;
    for i in 0..5 {
        app.publish("4/raw_log", format!("line {i}")).await;
        // Another vehicle and another type interleave: the cursor skips them.
        app.publish("5/raw_log", format!("other {i}")).await;
        app.publish("4/vehicle_log", format!(r#"{{"speed":{i}}}"#))
            .await;
    }
    app.wait_rows("raw_logs", 10).await;
    app.wait_rows("vehicle_logs", 5).await;

    // Oldest first, two at a time.
    let mut lines = Vec::new();
    let mut cursor: Option<i64> = None;
    let mut last_page = Value::Null;
    for _ in 0..5 {
        let after = cursor
            .map(|c| format!("&after_seq={c}"))
            .unwrap_or_default();
        let (status, page) = app
            .get(&format!("/api/vehicles/4/raw_log?limit=2{after}"))
            .await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            lines.push(item["data"].as_str().unwrap().to_owned());
        }
        cursor = page["next_after_seq"].as_i64();
        let done = page["has_more"] == false;
        last_page = page;
        if done {
            break;
        }
    }
    assert_eq!(lines, ["line 0", "line 1", "line 2", "line 3", "line 4"]);
    assert_eq!(last_page["next_before_seq"], Value::Null);

    // Newest first, paged backwards with before_seq.
    let (_, page) = app.get("/api/vehicles/4/raw_log?order=desc&limit=3").await;
    let data: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["data"].clone())
        .collect();
    assert_eq!(data, [json!("line 4"), json!("line 3"), json!("line 2")]);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["next_after_seq"], Value::Null);
    let before = page["next_before_seq"].as_i64().unwrap();
    let (_, page) = app
        .get(&format!(
            "/api/vehicles/4/raw_log?order=desc&limit=3&before_seq={before}"
        ))
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["items"][1]["data"], "line 0");
    assert_eq!(page["has_more"], false);
    assert_eq!(page["next_before_seq"], Value::Null);

    // Then live from the same cursor: the next frame is the next message, nothing repeated.
    let since = last_page["live_since"].as_i64().unwrap();
    assert!(since >= cursor.unwrap());
    let mut ws = app
        .connect_ws(&format!("/api/ws/vehicle/4?types=raw_log&since={since}"))
        .await;
    ws.next_json().await;
    app.publish("4/raw_log", "line 5").await;
    let next = ws.next_data().await;
    assert_eq!(next["data"], "line 5");
    assert!(next["seq"].as_i64().unwrap() > since);
    app.stop().await;
}

#[actix_web::test]
async fn history_selects_a_half_open_time_range_and_a_sensor() {
    let mut app = spawn_app().await;
    for (second, sensor) in [(0, 1), (1, 2), (2, 1), (3, 2)] {
        app.publish(
            "6/sensor_log",
            format!(
                r#"{{"sensor_id":{sensor},"data":{{"t":{second}}},"timestamp":"2025-10-18T16:30:0{second}.250Z"}}"#
            ),
        )
        .await;
    }
    app.wait_rows("sensor_logs", 4).await;

    let seconds = |page: &Value| -> Vec<i64> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["data"]["t"].as_i64().unwrap())
            .collect()
    };
    let (status, page) = app
        .get("/api/vehicles/6/sensor_log?from=2025-10-18T16:30:01.250Z&to=2025-10-18T16:30:03.250Z")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(seconds(&page), [1, 2], "from is inclusive, to exclusive");
    // Offsets are converted to UTC.
    let (_, page) = app
        .get("/api/vehicles/6/sensor_log?from=2025-10-18T23:30:01%2B07:00")
        .await;
    assert_eq!(seconds(&page), [1, 2, 3]);
    let (_, page) = app.get("/api/vehicles/6/sensor_log?sensor_id=2").await;
    assert_eq!(seconds(&page), [1, 3]);
    app.stop().await;
}

#[actix_web::test]
async fn a_track_has_the_positions_in_time_order_and_downsamples_evenly() {
    let mut app = spawn_app().await;
    for i in 0..10 {
        app.publish(
            "7/vehicle_log",
            format!(
                r#"{{"latitude":{},"longitude":{},"timestamp":"2025-10-18T16:30:{i:02}Z"}}"#,
                -6.0 - i as f64 / 100.0,
                106.0 + i as f64 / 100.0
            ),
        )
        .await;
    }
    // No position: not part of the track.
    app.publish("7/vehicle_log", r#"{"mode":"RTL","latitude":-6.5}"#)
        .await;
    app.wait_rows("vehicle_logs", 11).await;

    let (status, track) = app.get("/api/vehicles/7/track").await;
    assert_eq!(status, 200, "{track}");
    assert_eq!(track["total_points"], 10);
    assert_eq!(track["downsampled"], false);
    let points = track["points"].as_array().unwrap();
    assert_eq!(points.len(), 10);
    assert_eq!(
        points[0],
        json!({"time": "2025-10-18T16:30:00.000Z", "latitude": -6.0, "longitude": 106.0})
    );

    let (_, track) = app.get("/api/vehicles/7/track?points=4").await;
    assert_eq!(track["downsampled"], true);
    let times: Vec<_> = track["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["time"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        times,
        [
            "2025-10-18T16:30:00.000Z",
            "2025-10-18T16:30:03.000Z",
            "2025-10-18T16:30:06.000Z",
            "2025-10-18T16:30:09.000Z"
        ]
    );

    let (_, track) = app
        .get("/api/vehicles/7/track?from=2025-10-18T16:30:08Z&to=2025-10-18T16:30:09Z")
        .await;
    assert_eq!(track["total_points"], 1);
    assert_eq!(track["points"][0]["time"], "2025-10-18T16:30:08.000Z");
    app.stop().await;
}

#[actix_web::test]
async fn every_bad_parameter_is_a_400_that_names_it() {
    let mut app = spawn_app().await;
    app.publish("1/raw_log", "hello").await;
    app.wait_rows("raw_logs", 1).await;
    let cases = [
        ("/api/vehicles/a.b", "vehicle_id"),
        ("/api/vehicles/0", "vehicle_id"),
        ("/api/vehicles/-3/raw_log", "vehicle_id"),
        ("/api/vehicles/1.5/track", "vehicle_id"),
        ("/api/vehicles/1/bogus_log", "type"),
        ("/api/vehicles/1/raw_log?from=yesterday", "from"),
        ("/api/vehicles/1/raw_log?to=2025-13-40T00:00:00Z", "to"),
        (
            "/api/vehicles/1/raw_log?from=2025-10-19T00:00:00Z&to=2025-10-18T00:00:00Z",
            "to",
        ),
        ("/api/vehicles/1/raw_log?limit=0", "limit"),
        ("/api/vehicles/1/raw_log?limit=1001", "limit"),
        ("/api/vehicles/1/raw_log?limit=ten", "limit"),
        ("/api/vehicles/1/raw_log?order=sideways", "order"),
        ("/api/vehicles/1/raw_log?after_seq=-1", "after_seq"),
        ("/api/vehicles/1/raw_log?after_seq=x", "after_seq"),
        ("/api/vehicles/1/raw_log?before_seq=1e3", "before_seq"),
        ("/api/vehicles/1/raw_log?sensor_id=5", "sensor_id"),
        ("/api/vehicles/1/sensor_log?sensor_id=a.b", "sensor_id"),
        ("/api/vehicles/1/raw_log?after=5", "query"),
        ("/api/vehicles/1?limit=5", "query"),
        ("/api/vehicles/1/track?points=0", "points"),
        ("/api/vehicles/1/track?points=10001", "points"),
        ("/api/vehicles/1/track?from=2025-10-18", "from"),
    ];
    for (path, parameter) in cases {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"], "bad_parameter", "{path}: {body}");
        assert_eq!(body["parameter"], parameter, "{path}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("'{parameter}'")),
            "{path}: the message names the parameter: {message}"
        );
    }
    app.stop().await;
}

#[actix_web::test]
async fn metrics_are_served_in_the_prometheus_text_format() {
    let mut app = spawn_app().await;
    app.publish("1/vehicle_log", r#"{"mode":"AUTO"}"#).await;
    app.publish("1/vehicle_log", "not json").await;
    let _ws = app.connect_ws("/api/ws").await;
    wait_for("the metrics to count the stored message", || async {
        let (_, _, text) = get_text(&app, "/metrics").await;
        text.contains("seano_messages_stored_total{instance=\"test-gw\",type=\"vehicle_log\"} 1\n")
            && text.contains(
                "seano_messages_rejected_total{instance=\"test-gw\",reason=\"invalid_json\"} 1\n",
            )
    })
    .await;
    let (status, content_type, text) = get_text(&app, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    for line in [
        "# TYPE seano_messages_received_total counter",
        "seano_messages_broadcast_total{instance=\"test-gw\",type=\"raw_log\"} 0",
        "seano_ws_connections{instance=\"test-gw\"} 1",
        "seano_mqtt_connected{instance=\"test-gw\"} 1",
        "seano_database_up{instance=\"test-gw\"} 1",
        "seano_last_seq{instance=\"test-gw\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    app.stop().await;
}

#[actix_web::test]
async fn the_dashboard_and_its_modules_are_served_at_the_root() {
    let mut app = spawn_app().await;
    let (status, content_type, html) = get_text(&app, "/").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(html.contains("app.js") && html.contains("style.css"));
    for (path, kind) in [
        ("/app.js", "text/javascript"),
        ("/seano-client.js", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let (status, content_type, body) = get_text(&app, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert!(!body.is_empty(), "{path}");
        assert!(
            !body.contains("https://") && !body.contains("http://"),
            "{path} loads nothing from another host"
        );
    }
    app.stop().await;
}
