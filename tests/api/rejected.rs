//! Bad input from vehicles: rejected with a reason, stored, counted; good traffic unaffected.

use serde_json::json;

use crate::helpers::spawn_with;
use crate::helpers::Resources;

#[actix_web::test]
async fn each_kind_of_bad_input_is_stored_counted_and_good_traffic_flows() {
    let mut app = spawn_with(Resources::fresh().await, |s| s.max_payload_bytes = 1024).await;
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;
    let prefix = app.prefix.clone();

    app.publish("1/raw_log", "before").await;
    let bad: Vec<(String, Vec<u8>, &str)> = vec![
        (
            format!("{prefix}/-1/raw_log"),
            b"x".to_vec(),
            "invalid_vehicle_id",
        ),
        (
            format!("{prefix}/0/vehicle_log"),
            b"{}".to_vec(),
            "invalid_vehicle_id",
        ),
        (
            format!("{prefix}/1/vehicle_log"),
            b"{not json".to_vec(),
            "invalid_json",
        ),
        (
            format!("{prefix}/1/vehicle_log"),
            br#"{"battery_voltage":"high"}"#.to_vec(),
            "invalid_field",
        ),
        (
            format!("{prefix}/1/sensor_log"),
            br#"{"sensor_id":"five?","data":{}}"#.to_vec(),
            "invalid_field",
        ),
        (format!("{prefix}/1/raw_log"), Vec::new(), "empty_payload"),
        (
            format!("{prefix}/1/raw_log"),
            vec![b'a'; 4000],
            "payload_too_large",
        ),
        (
            format!("{prefix}/1/raw_log"),
            vec![0xff, 0xfe, 0x00],
            "invalid_utf8",
        ),
        (
            format!("{prefix}/1/sensor_log"),
            br#"{"sensor_id":1,"data":{"a":"\u0000"}}"#.to_vec(),
            "invalid_field",
        ),
    ];
    for (topic, payload, _) in &bad {
        app.publish_raw(topic, payload.clone()).await;
    }
    app.publish("1/raw_log", "after").await;

    let first = ws.next_data().await;
    let second = ws.next_data().await;
    assert_eq!(
        (first["data"].as_str(), second["data"].as_str()),
        (Some("before"), Some("after"))
    );
    assert_eq!(
        second["seq"].as_i64().unwrap(),
        first["seq"].as_i64().unwrap() + 1,
        "rejected messages take no seq"
    );

    app.wait_rows("rejected_messages", bad.len() as i64).await;
    let rows = entity::rejected_message::Entity::find()
        .order_by_asc(entity::rejected_message::Column::Id)
        .all(&app.db)
        .await
        .unwrap();
    for (row, (topic, payload, reason)) in rows.iter().zip(&bad) {
        assert_eq!(&row.topic, topic);
        assert_eq!(row.reason, *reason, "{topic}: {}", row.detail);
        assert!(!row.detail.is_empty());
        if *reason == "payload_too_large" {
            assert_eq!(
                row.payload,
                payload[..1024].to_vec(),
                "the first MAX_PAYLOAD_BYTES are kept"
            );
            assert!(row.detail.contains("4000 bytes"), "{}", row.detail);
        } else {
            assert_eq!(&row.payload, payload, "the payload is kept as received");
        }
    }

    let (_, stats) = app.get("/api/ws/stats").await;
    let rejected = &stats["messages"]["rejected"];
    assert_eq!(rejected["invalid_vehicle_id"], 2);
    assert_eq!(rejected["invalid_json"], 1);
    assert_eq!(rejected["invalid_field"], 3);
    assert_eq!(rejected["empty_payload"], 1);
    assert_eq!(rejected["payload_too_large"], 1);
    assert_eq!(rejected["invalid_utf8"], 1);
    assert_eq!(stats["messages"]["rejected_total"], 9);
    assert_eq!(
        stats["messages"]["stored"],
        json!({"raw_log": 2, "sensor_log": 0, "vehicle_log": 0, "command_status": 0})
    );
    assert_eq!(app.count("raw_logs").await, 2);
    assert_eq!(
        app.vehicles().await,
        1,
        "rejected messages register no vehicle"
    );
    app.stop().await;
}

use sea_orm::{EntityTrait, QueryOrder};

#[actix_web::test]
async fn a_message_the_database_refuses_is_kept_as_storage_error_and_ingest_goes_on() {
    use sea_orm::{ConnectionTrait, Statement};
    let mut app = crate::helpers::spawn_app().await;
    // A trigger makes the database itself refuse one payload, as a constraint or a value it
    // cannot store would.
    let backend = app.db.get_database_backend();
    let ddl: &[&str] = match backend {
        sea_orm::DatabaseBackend::Postgres => &[
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
               IF NEW.data = 'poison' THEN RAISE EXCEPTION 'poison refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON raw_logs FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        ],
        _ => &["CREATE TRIGGER refuse_poison BEFORE INSERT ON raw_logs \
                WHEN NEW.data = 'poison' BEGIN SELECT RAISE(ABORT, 'poison refused'); END"],
    };
    for sql in ddl {
        app.db
            .execute_raw(Statement::from_string(backend, sql.to_string()))
            .await
            .unwrap();
    }
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;
    let mut publisher = app.publisher().await;
    for line in ["before", "poison", "after"] {
        publisher
            .send(
                &format!("{}/1/raw_log", app.prefix),
                line.as_bytes().to_vec(),
            )
            .await;
    }
    publisher.wait_acks(3).await;
    assert_eq!(ws.next_data().await["data"], "before");
    assert_eq!(ws.next_data().await["data"], "after");
    app.wait_rows("rejected_messages", 1).await;
    let row = entity::rejected_message::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.reason.as_str(), row.payload.as_slice()),
        ("storage_error", b"poison".as_slice())
    );
    assert!(row.detail.contains("poison refused"), "{}", row.detail);
    assert_eq!(app.count("raw_logs").await, 2);
    app.stop().await;
}
