//! Vehicles and sensors as SEANO boats name themselves (registration codes, sensor topics,
//! numbers sent as strings), and topics of no known shape: nothing published under the prefix
//! goes unseen.

use serde_json::json;

use crate::helpers::{spawn_app, wait_for};

#[actix_web::test]
async fn a_vehicle_named_by_a_code_is_registered_streamed_and_served_by_code_or_id() {
    let mut app = spawn_app().await;
    let mut fleet = app.connect_ws("/api/ws").await;
    fleet.next_json().await;

    app.publish(
        "USV-003/vehicle_log",
        r#"{"battery_voltage": "13.76", "rssi": -66, "pitch": "-0.0", "mode": "AUTO"}"#,
    )
    .await;
    let frame = fleet.next_data().await;
    assert_eq!(frame["vehicle_code"], "USV-003", "{frame}");
    let id = frame["vehicle_id"].as_i64().unwrap();
    assert!(
        id > i64::from(i32::MAX),
        "code ids stay above topic ids: {id}"
    );
    assert_eq!(
        frame["data"]["battery_voltage"], 13.76,
        "a number, not a string"
    );
    assert_eq!(frame["data"]["pitch"], -0.0);

    // A numeric topic never lands on the coded vehicle, and a second code gets the next id.
    app.publish("7/raw_log", "numeric").await;
    let numeric = fleet.next_data().await;
    assert_eq!(numeric["vehicle_id"], 7);
    assert!(numeric.get("vehicle_code").is_none(), "{numeric}");
    app.publish("USV-004/raw_log", "second").await;
    assert_eq!(fleet.next_data().await["vehicle_id"], id + 1);

    // The stream and the REST API take the code or the id.
    let mut by_code = app.connect_ws("/api/ws/vehicle/USV-003").await;
    assert_eq!(by_code.next_json().await["vehicle_id"], id);
    let mut by_id = app.connect_ws(&format!("/api/ws/vehicle/{id}")).await;
    by_id.next_json().await;
    app.publish("USV-003/raw_log", "to both").await;
    for ws in [&mut by_code, &mut by_id] {
        let f = ws.next_data().await;
        assert_eq!(
            (f["data"].as_str(), f["vehicle_code"].as_str()),
            (Some("to both"), Some("USV-003"))
        );
    }
    let (status, vehicle) = app.get("/api/vehicles/USV-003").await;
    assert_eq!(status, 200, "{vehicle}");
    assert_eq!(
        (vehicle["id"].as_i64(), vehicle["vehicle_code"].as_str()),
        (Some(id), Some("USV-003"))
    );
    let (_, page) = app.get(&format!("/api/vehicles/{id}/raw_log")).await;
    assert_eq!(page["items"][0]["vehicle_code"], "USV-003", "{page}");
    let (status, _) = app.get("/api/vehicles/USV-999").await;
    assert_eq!(status, 404, "an unregistered code");

    // Resume carries the code too.
    let mut resumed = app.connect_ws("/api/ws?since=0").await;
    resumed.next_json().await;
    assert_eq!(resumed.next_data().await["vehicle_code"], "USV-003");
    app.stop().await;
}

#[actix_web::test]
async fn sensors_named_by_a_code_in_the_topic_or_the_payload_are_stored_with_it() {
    let mut app = spawn_app().await;
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;
    app.publish(
        "USV-003/CTD-01/sensor_log",
        r#"{"depth": 25.4, "salinity": 33.8, "timestamp": "2025-01-01T08:30:00Z"}"#,
    )
    .await;
    let f = ws.next_data().await;
    assert_eq!(f["sensor_code"], "CTD-01", "{f}");
    assert!(f.get("sensor_id").is_none(), "{f}");
    assert_eq!(f["data"], json!({"depth": 25.4, "salinity": 33.8}));
    assert_eq!(f["timestamp"], "2025-01-01T08:30:00.000Z");

    app.publish(
        "4/sensor_log",
        r#"{"sensor_id": "TEMP-001", "data": {"t": 28.5}}"#,
    )
    .await;
    assert_eq!(ws.next_data().await["sensor_code"], "TEMP-001");
    app.publish("4/sensor_log", r#"{"sensor_id": "5", "data": {"t": 1}}"#)
        .await;
    assert_eq!(ws.next_data().await["sensor_id"], 5);

    let (_, page) = app
        .get("/api/vehicles/4/sensor_log?sensor_id=TEMP-001")
        .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["sensor_code"], "TEMP-001");
    let (_, page) = app.get("/api/vehicles/4/sensor_log?sensor_id=5").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    app.stop().await;
}

#[actix_web::test]
async fn topics_of_no_known_shape_are_kept_as_unknown_topic_and_the_downlink_is_ignored() {
    let mut app = spawn_app().await;
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;
    let prefix = app.prefix.clone();
    for topic in [
        format!("{prefix}/7/telemetry"),
        format!("{prefix}/USV-003/TEMP-001/data"),
        format!("{prefix}/status"),
    ] {
        app.publish_raw(&topic, r#"{"x": 1}"#).await;
    }
    // The gateway's own downlink topic: recognised, neither stored nor rejected.
    app.publish_raw(
        &format!("{prefix}/7/command"),
        r#"{"request_id":"r1","command":"RTL"}"#,
    )
    .await;
    app.publish("7/vehicle_log", r#"{"battery_voltage": "not a number"}"#)
        .await;
    app.publish("7/raw_log", "after").await;
    assert_eq!(ws.next_data().await["data"], "after");
    app.wait_rows("rejected_messages", 4).await;
    wait_for("the rejections to be counted", || async {
        let (_, stats) = app.get("/api/ws/stats").await;
        stats["messages"]["rejected"]["unknown_topic"] == 3
            && stats["messages"]["rejected"]["invalid_field"] == 1
    })
    .await;
    assert_eq!(app.count("raw_logs").await, 1);
    app.stop().await;
}
