//! The simulator against the real gateway: a seeded run of a fixed count ends with exactly its
//! messages stored and streamed, and its malformed ones in `rejected_messages`.

use std::collections::BTreeMap;

use jetson_sim::{CancellationToken, SimConfig};
use sea_orm::{ConnectionTrait, Statement};

use crate::helpers::{spawn_app, unique};

#[actix_web::test]
async fn a_seeded_simulator_run_is_stored_streamed_and_rejected_exactly() {
    let mut app = spawn_app().await;
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;

    let config = SimConfig {
        broker: app.mqtt_url.clone(),
        client_id: unique("sim"),
        prefix: app.prefix.clone(),
        vehicles: 3,
        rate: 40.0,
        sensor_rate: 4.0,
        seed: Some(7),
        count: Some(600),
        bad_ratio: 0.05,
        qos: 1,
        ..SimConfig::default()
    };
    let summary = jetson_sim::run(config, CancellationToken::new())
        .await
        .expect("the simulator runs");
    assert_eq!(
        (summary.total_sent, summary.failures),
        (600, 0),
        "{summary}"
    );
    assert!(
        summary.bad_total > 0,
        "the seed gives some malformed messages"
    );

    app.wait_rows("raw_logs", summary.by_type.raw_log as i64)
        .await;
    app.wait_rows("sensor_logs", summary.by_type.sensor_log as i64)
        .await;
    app.wait_rows("vehicle_logs", summary.by_type.vehicle_log as i64)
        .await;
    app.wait_rows("rejected_messages", summary.bad_total as i64)
        .await;

    // Every good message reached the all-vehicles stream, per vehicle and type.
    let mut streamed: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
    for _ in 0..summary.good_total() {
        let frame = ws.next_data().await;
        *streamed
            .entry(frame["vehicle_id"].as_i64().unwrap())
            .or_default()
            .entry(frame["type"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for (vehicle, counts) in &summary.per_vehicle {
        let got = &streamed[vehicle];
        for (kind, want) in [
            ("raw_log", counts.raw_log),
            ("sensor_log", counts.sensor_log),
            ("vehicle_log", counts.vehicle_log),
        ] {
            assert_eq!(
                got.get(kind).copied().unwrap_or(0),
                want,
                "vehicle {vehicle} {kind}"
            );
        }
    }

    // Each malformed message is stored with the reason the simulator expected.
    let rows = app
        .db
        .query_all_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT reason, COUNT(*) FROM rejected_messages GROUP BY reason".to_owned(),
        ))
        .await
        .unwrap();
    let stored: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
            )
        })
        .collect();
    let expected: BTreeMap<String, i64> = summary
        .bad_by_reason
        .iter()
        .map(|(reason, n)| (reason.as_str().to_owned(), *n as i64))
        .collect();
    assert_eq!(stored, expected);
    app.stop().await;
}
