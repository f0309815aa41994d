//! The WebSocket protocol: per-vehicle streams, subscriptions, filters, client frames, stats.

use serde_json::json;

use crate::helpers::{spawn_app, spawn_with, Resources, WsEvent};

#[actix_web::test]
async fn vehicle_stream_receives_only_its_vehicle() {
    let mut app = spawn_app().await;
    let mut ws = app.connect_ws("/api/ws/vehicle/2").await;
    let hello = ws.next_json().await;
    assert_eq!(hello["type"], "connection");
    assert_eq!(hello["vehicle_id"], 2);

    app.publish("1/raw_log", "one").await;
    app.publish("2/raw_log", "two").await;
    app.publish("1/vehicle_log", r#"{"mode":"AUTO"}"#).await;
    app.publish("2/vehicle_log", r#"{"mode":"RTL"}"#).await;

    let a = ws.next_data().await;
    let b = ws.next_data().await;
    assert_eq!(
        (a["vehicle_id"].as_i64(), a["data"].as_str()),
        (Some(2), Some("two"))
    );
    assert_eq!(
        (b["vehicle_id"].as_i64(), b["data"]["mode"].as_str()),
        (Some(2), Some("RTL"))
    );
    // Vehicle 1's vehicle_log took the seq between these two; it did not come.
    assert_eq!(b["seq"].as_i64(), a["seq"].as_i64().map(|s| s + 2));
    let pong_and_before = ws.round_trip().await;
    assert!(
        pong_and_before.is_empty(),
        "nothing else arrived: {pong_and_before:?}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn subscribe_and_unsubscribe_change_what_a_client_receives() {
    let mut app = spawn_app().await;
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;

    ws.send_json(json!({"type": "subscribe", "vehicle_id": 7}))
        .await;
    let ack = ws.next_json().await;
    assert_eq!(
        ack,
        json!({"type": "subscription_ack", "action": "subscribe", "vehicle_id": 7,
        "filter": {"all": true, "vehicles": [7], "types": ["raw_log", "sensor_log", "vehicle_log", "command_status"]}})
    );

    ws.send_json(json!({"type": "unsubscribe"})).await;
    let ack = ws.next_json().await;
    assert_eq!(ack["filter"]["all"], false);
    assert_eq!(ack["filter"]["vehicles"], json!([7]));

    // Only vehicle 7 now: vehicle 8's message is skipped, so 7's is the next frame.
    app.publish("8/raw_log", "eight").await;
    app.publish("7/raw_log", "seven").await;
    assert_eq!(ws.next_data().await["data"], "seven");

    ws.send_json(json!({"type": "unsubscribe", "vehicle_id": 7}))
        .await;
    assert_eq!(ws.next_json().await["filter"]["vehicles"], json!([]));
    ws.send_json(json!({"type": "subscribe", "vehicle_id": 8}))
        .await;
    assert_eq!(ws.next_json().await["filter"]["vehicles"], json!([8]));
    app.publish("7/raw_log", "seven again").await;
    app.publish("8/raw_log", "eight again").await;
    assert_eq!(ws.next_data().await["data"], "eight again");

    ws.send_json(json!({"type": "subscribe"})).await;
    assert_eq!(ws.next_json().await["filter"]["all"], true);
    app.publish("9/raw_log", "nine").await;
    assert_eq!(ws.next_data().await["data"], "nine");
    app.stop().await;
}

#[actix_web::test]
async fn types_filter_limits_frames_to_those_types() {
    let mut app = spawn_app().await;
    let mut ws = app.connect_ws("/api/ws?types=vehicle_log,sensor_log").await;
    let hello = ws.next_json().await;
    assert_eq!(
        hello["filter"]["types"],
        json!(["sensor_log", "vehicle_log"])
    );
    app.publish("1/raw_log", "skipped").await;
    app.publish("1/sensor_log", r#"{"sensor_id":3,"data":{"ph":7.1}}"#)
        .await;
    app.publish("1/raw_log", "skipped too").await;
    app.publish("1/vehicle_log", r#"{"speed":2.5}"#).await;
    assert_eq!(ws.next_data().await["type"], "sensor_log");
    assert_eq!(ws.next_data().await["type"], "vehicle_log");

    let mut vs = app.connect_ws("/api/ws/vehicle/1?types=raw_log").await;
    vs.next_json().await;
    app.publish("1/vehicle_log", r#"{"speed":3}"#).await;
    app.publish("1/raw_log", "kept").await;
    assert_eq!(vs.next_data().await["data"], "kept");

    let (status, body) = app.get("/api/ws?types=vehicle_log,bogus").await;
    assert_eq!(status, 400);
    assert_eq!(body["parameter"], "types");
    app.stop().await;
}

#[actix_web::test]
async fn bad_client_frames_get_error_frames_and_the_connection_stays_open() {
    let mut app = spawn_app().await;
    let mut ws = app.connect_ws("/api/ws/vehicle/5").await;
    ws.next_json().await;
    for (sent, expected) in [
        ("this is not json", "Invalid JSON format"),
        (r#"{"type":"dance"}"#, "Unknown message type: dance"),
        (
            r#"{"type":"subscribe","vehicle_id":"5"}"#,
            "vehicle_id must be a positive integer, got \"5\"",
        ),
        (
            r#"{"type":"subscribe","vehicle_id":-2}"#,
            "vehicle_id must be a positive integer, got -2",
        ),
        (r#"{"no_type":1}"#, "Missing \"type\""),
        ("[1,2]", "A message must be a JSON object with a \"type\""),
    ] {
        ws.send_text(sent).await;
        assert_eq!(
            ws.next_json().await,
            json!({"type": "error", "message": expected}),
            "after {sent}"
        );
    }
    ws.send_binary(vec![1, 2, 3]).await;
    assert_eq!(ws.next_json().await["type"], "error");

    ws.send_json(json!({"type": "ping", "timestamp": 1234}))
        .await;
    let pong = ws.next_json().await;
    assert_eq!(
        (
            pong["type"].as_str(),
            pong["timestamp"].as_i64(),
            pong["vehicle_id"].as_i64()
        ),
        (Some("pong"), Some(1234), Some(5))
    );
    assert!(pong["server_time"].as_str().unwrap().ends_with('Z'));

    app.publish("5/raw_log", "still streaming").await;
    assert_eq!(ws.next_data().await["data"], "still streaming");
    app.stop().await;
}

#[actix_web::test]
async fn a_frame_over_the_size_limit_closes_with_1009() {
    let mut app = spawn_with(Resources::fresh().await, |s| s.ws_max_frame_bytes = 1024).await;
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;
    ws.send_text(&"x".repeat(4096)).await;
    match ws.next_event().await {
        WsEvent::Closed(Some(reason)) => assert_eq!(u16::from(reason.code), 1009),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
    app.stop().await;
}

#[actix_web::test]
async fn malformed_stream_requests_are_refused_before_the_upgrade() {
    let mut app = spawn_with(Resources::fresh().await, |s| s.ws_max_connections = 1).await;
    for path in [
        "/api/ws/vehicle/a.b",
        "/api/ws/vehicle/0",
        "/api/ws/vehicle/1.5",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["error"], "bad_parameter");
        assert_eq!(body["parameter"], "vehicle_id");
    }
    let _first = app.connect_ws("/api/ws").await;
    let refused = awc::Client::default()
        .ws(format!("ws://127.0.0.1:{}/api/ws", app.port))
        .connect()
        .await;
    match refused {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status.as_u16(), 503)
        }
        Err(e) => panic!("expected 503, got {e}"),
        Ok(_) => panic!("the connection cap let a second client in"),
    }
    app.stop().await;
}

#[actix_web::test]
async fn stats_and_status_report_connections_and_counts() {
    let mut app = spawn_app().await;
    let mut all = app.connect_ws("/api/ws").await;
    all.next_json().await;
    let mut one = app.connect_ws("/api/ws/vehicle/3").await;
    one.next_json().await;
    app.publish("3/raw_log", "a").await;
    app.publish("3/sensor_log", r#"{"sensor_id":1,"data":{"t":1}}"#)
        .await;
    app.publish("4/vehicle_log", r#"{"armed":"yes"}"#).await;
    all.next_data().await;
    all.next_data().await;
    one.next_data().await;
    one.next_data().await;

    let (status, stats) = app.get("/api/ws/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["active_connections"], 2);
    let infos = stats["connections_info"].as_array().unwrap();
    assert_eq!(infos.len(), 2);
    assert_eq!(infos[0]["client_info"], json!({}));
    assert_eq!(infos[1]["client_info"], json!({"vehicle_filter": 3}));
    assert!(infos[0]["connected_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        stats["connections_by_stream"],
        json!({"all_vehicles": 1, "vehicle": 1})
    );
    assert_eq!(stats["connections_by_vehicle"], json!({"3": 1}));
    let m = &stats["messages"];
    assert_eq!(
        m["stored"],
        json!({"raw_log": 1, "sensor_log": 1, "vehicle_log": 0, "command_status": 0})
    );
    assert_eq!(
        m["broadcast"],
        json!({"raw_log": 1, "sensor_log": 1, "vehicle_log": 0, "command_status": 0})
    );
    assert_eq!(m["rejected"]["invalid_field"], 1);
    assert!(
        m["frames_sent"].as_u64().unwrap() >= 6,
        "2 hellos and 4 data frames"
    );
    assert_eq!(stats["mqtt"]["connected"], true);
    assert_eq!(stats["database"]["connected"], true);

    assert_eq!(app.get("/api/mqtt/status").await.1["status"], "running");
    assert_eq!(app.get("/api/mqtt/status").await.1["connected"], true);
    assert_eq!(app.get("/health").await, (200, json!({"status": "ok"})));
    let (status, ready) = app.get("/ready").await;
    assert_eq!(
        (status, ready["database"].as_bool(), ready["mqtt"].as_bool()),
        (200, Some(true), Some(true))
    );

    drop(one);
    crate::helpers::wait_for("the closed client to leave the stats", || async {
        app.get("/api/ws/stats").await.1["active_connections"] == 1
    })
    .await;
    app.stop().await;
}
