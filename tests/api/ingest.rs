//! Each message type, end to end: MQTT → database → WebSocket frame.

use serde_json::{json, Value};

use crate::helpers::spawn_app;

fn is_frame_time(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    // 2025-10-18T16:30:00.123Z
    s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T' && s.as_bytes()[19] == b'.'
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<_> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

/// The messages real SEANO vehicles publish today, as (topic suffix, payload).
fn fixtures() -> Vec<(String, Vec<u8>, Value)> {
    let doc: Value =
        serde_json::from_str(include_str!("../fixtures/seano-jetson-messages.json")).unwrap();
    doc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let suffix = m["topic"]
                .as_str()
                .unwrap()
                .trim_start_matches("seano/")
                .to_owned();
            match (&m["payload_text"], &m["payload_json"]) {
                (Value::String(s), _) => (suffix, s.clone().into_bytes(), Value::String(s.clone())),
                (_, j) => (suffix, serde_json::to_vec(j).unwrap(), j.clone()),
            }
        })
        .collect()
}

#[actix_web::test]
async fn every_fixture_message_is_stored_and_streamed_in_the_exact_seano_shape() {
    let mut app = spawn_app().await;
    let mut ws = app.connect_ws("/api/ws").await;
    let hello = ws.next_json().await;
    assert_eq!(hello["type"], "connection");
    assert_eq!(hello["message"], "Connected to SEANO real-time data stream");
    assert!(is_frame_time(&hello["timestamp"]), "{hello}");
    assert_eq!(hello["connection_count"], 1);
    assert!(hello.get("vehicle_id").is_none());

    let fixtures = fixtures();
    for (suffix, payload, _) in &fixtures {
        app.publish(suffix, payload.clone()).await;
    }

    let mut last_seq = None;
    for (suffix, _, sent) in &fixtures {
        let frame = ws.next_data().await;
        let mut parts = suffix.split('/');
        let vehicle: i64 = parts.next().unwrap().parse().unwrap();
        let kind = parts.next().unwrap();
        assert_eq!(frame["type"], kind);
        assert_eq!(frame["vehicle_id"], vehicle);
        assert_eq!(frame["connection_count"], 1);
        assert!(
            is_frame_time(&frame["timestamp"]) && is_frame_time(&frame["broadcast_time"]),
            "{frame}"
        );
        let seq = frame["seq"].as_i64().unwrap();
        if let Some(last) = last_seq {
            assert_eq!(seq, last + 1, "seq increases by one in commit order");
        }
        last_seq = Some(seq);
        let mut expected_keys = vec![
            "broadcast_time",
            "connection_count",
            "data",
            "id",
            "seq",
            "timestamp",
            "type",
            "vehicle_id",
        ];
        match kind {
            "raw_log" => assert_eq!(frame["data"], *sent),
            "sensor_log" => {
                expected_keys.push("sensor_id");
                expected_keys.sort();
                assert_eq!(frame["sensor_id"], sent["sensor_id"]);
                assert_eq!(frame["data"], sent["data"]);
            }
            "vehicle_log" => assert_eq!(
                frame["data"], *sent,
                "data is the full object the vehicle sent"
            ),
            other => panic!("unexpected type {other}"),
        }
        assert_eq!(keys(&frame), expected_keys);
        let id = frame["id"].as_i64().unwrap();
        let table = format!("{kind}s");
        let (seq_in_db, vehicle_in_db) = row_of(&app, &table, id).await;
        assert_eq!(
            (seq_in_db, vehicle_in_db),
            (seq, vehicle),
            "id is the row id in {table}"
        );
    }

    assert_eq!(app.count("raw_logs").await, 2);
    assert_eq!(app.count("sensor_logs").await, 2);
    assert_eq!(app.count("vehicle_logs").await, 4);
    assert_eq!(
        app.vehicles().await,
        2,
        "vehicles are registered on first sight"
    );
    app.stop().await;
}

async fn row_of(app: &crate::helpers::TestApp, table: &str, id: i64) -> (i64, i64) {
    use sea_orm::{ConnectionTrait, Statement};
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            format!("SELECT seq, vehicle_id FROM {table} WHERE id = {id}"),
        ))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("row {id} exists in {table} when its frame arrives"));
    (
        row.try_get_by_index(0).unwrap(),
        row.try_get_by_index(1).unwrap(),
    )
}

#[actix_web::test]
async fn vehicle_timestamps_are_kept_and_unknown_fields_stored_as_extra() {
    let mut app = spawn_app().await;
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;
    let state = json!({"battery_voltage": 12.1, "mode": "AUTO", "water_temp": 27.5,
                       "timestamp": "2025-10-18T23:30:00.5+07:00"});
    app.publish("4/vehicle_log", state.to_string()).await;
    let frame = ws.next_data().await;
    assert_eq!(frame["timestamp"], "2025-10-18T16:30:00.500Z");
    assert_eq!(
        frame["data"],
        json!({"battery_voltage": 12.1, "mode": "AUTO", "water_temp": 27.5})
    );

    let row = entity::vehicle_log::Entity::find_by_id(frame["id"].as_i64().unwrap())
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.mode.as_deref(), Some("AUTO"));
    assert_eq!(row.extra, json!({"water_temp": 27.5}));
    app.stop().await;
}

#[actix_web::test]
async fn every_broadcast_frame_is_already_committed() {
    let mut app = spawn_app().await;
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;
    let mut publisher = app.publisher().await;
    let n = 200;
    for i in 0..n {
        publisher
            .send(
                &format!("{}/{}/raw_log", app.prefix, 1 + i % 5),
                format!("line {i}").into_bytes(),
            )
            .await;
    }
    publisher.wait_acks(n).await;
    // Each frame's row must be visible from another connection the moment the frame arrives.
    for _ in 0..n {
        let frame = ws.next_data().await;
        let (seq, _) = row_of(&app, "raw_logs", frame["id"].as_i64().unwrap()).await;
        assert_eq!(seq, frame["seq"].as_i64().unwrap());
    }
    app.stop().await;
}

use sea_orm::EntityTrait;
