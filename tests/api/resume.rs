//! Resume with `since=`, resync beyond the window, and `snapshot=latest`.

use serde_json::{json, Value};

use crate::helpers::{
    keep_within_broker_queue, spawn_app, spawn_with, Publisher, Resources, TestApp,
};

#[actix_web::test]
async fn resume_with_since_under_load_has_no_gap_and_no_duplicate_at_the_seam() {
    let app = spawn_app().await;
    let total = 1200i64;
    let prefix = app.prefix.clone();
    let mut publisher = Publisher::connect(&app.mqtt_url).await;
    let db = app.db.clone();
    let publishing = tokio::spawn(async move {
        for i in 0..total {
            let (topic, payload) = if i % 2 == 0 {
                (
                    format!("{prefix}/{}/raw_log", 1 + i % 4),
                    format!("line {i}"),
                )
            } else {
                (
                    format!("{prefix}/{}/vehicle_log", 1 + i % 4),
                    json!({"speed": i}).to_string(),
                )
            };
            publisher.send(&topic, payload.into_bytes()).await;
            if i % 50 == 49 {
                publisher.wait_acks(50).await;
                keep_within_broker_queue(&db, i + 1).await;
            }
        }
    });

    // A dashboard reads for a while, then its connection drops.
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;
    let mut last = 0;
    while last < 300 {
        last = ws.next_data().await["seq"].as_i64().unwrap();
    }
    drop(ws);

    // It comes back with the last seq it saw, while traffic keeps flowing.
    let mut ws = app.connect_ws(&format!("/api/ws?since={last}")).await;
    ws.next_json().await;
    let mut seqs = Vec::new();
    while seqs.last().copied().unwrap_or(last) < total {
        seqs.push(ws.next_data().await["seq"].as_i64().unwrap());
    }
    publishing.await.unwrap();
    assert_eq!(
        seqs,
        ((last + 1)..=total).collect::<Vec<_>>(),
        "every seq after {last} exactly once, in order"
    );

    // A filtered resume replays only what matches, then continues live with the same filter.
    let mut vs = app
        .connect_ws("/api/ws/vehicle/2?types=vehicle_log&since=100")
        .await;
    vs.next_json().await;
    let expected: Vec<i64> = entity::vehicle_log::Entity::find()
        .filter(entity::vehicle_log::Column::VehicleId.eq(2))
        .filter(entity::vehicle_log::Column::Seq.gt(100))
        .order_by_asc(entity::vehicle_log::Column::Seq)
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.seq)
        .collect();
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        let frame = vs.next_data().await;
        assert_eq!(
            (frame["vehicle_id"].as_i64(), frame["type"].as_str()),
            (Some(2), Some("vehicle_log"))
        );
        got.push(frame["seq"].as_i64().unwrap());
    }
    assert_eq!(got, expected);
    let mut app = app;
    app.publish("2/vehicle_log", r#"{"speed":-1}"#).await;
    let live = vs.next_data().await;
    assert_eq!(
        live["seq"].as_i64().unwrap(),
        total + 1,
        "live frames follow the replay"
    );
    app.stop().await;
}

const REPLAYED: &str = "seano_ws_replayed_frames_total";

/// The data frames of a `since=` resume on `path` that carry seqs up to `last`, and how many
/// frames of replays the gateway served from the ring and from the database meanwhile.
async fn resume(app: &TestApp, path: &str, last: i64) -> (Vec<Value>, u64, u64) {
    let ring = app.metric(REPLAYED, "source=\"ring\"").await;
    let database = app.metric(REPLAYED, "source=\"database\"").await;
    let mut ws = app.connect_ws(path).await;
    ws.next_json().await;
    let mut frames = Vec::new();
    while frames
        .last()
        .is_none_or(|f: &Value| f["seq"].as_i64() < Some(last))
    {
        frames.push(ws.next_data().await);
    }
    (
        frames,
        app.metric(REPLAYED, "source=\"ring\"").await - ring,
        app.metric(REPLAYED, "source=\"database\"").await - database,
    )
}

/// A frame without what a replay from the database writes anew (its time and the count).
fn content(mut frame: Value) -> Value {
    let f = frame.as_object_mut().unwrap();
    f.remove("broadcast_time");
    f.remove("connection_count");
    frame
}

#[actix_web::test]
async fn a_resume_is_served_from_the_replay_ring_and_after_a_restart_from_the_database_alike() {
    let mut app = spawn_app().await;
    // Vehicles 1 and 2 in turn: vehicle 2's are the even seqs.
    for i in 0..30 {
        let payload = json!({"n": i, "mode": "AUTO"}).to_string();
        app.publish(&format!("{}/vehicle_log", 1 + i % 2), payload)
            .await;
    }
    app.wait_rows("vehicle_logs", 30).await;
    let path = "/api/ws/vehicle/2?since=10";
    let (from_ring, ring, database) = resume(&app, path, 30).await;
    let seqs: Vec<i64> = from_ring
        .iter()
        .map(|f| f["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (12..=30).step_by(2).collect::<Vec<_>>());
    assert_eq!((ring, database), (10, 0), "served from memory");

    // A restarted gateway's ring holds nothing older than its start: the database serves it.
    let resources = app.resources.clone();
    app.stop().await;
    let mut app = spawn_with(resources, |_| {}).await;
    let (from_database, ring, database) = resume(&app, path, 30).await;
    assert_eq!((ring, database), (0, 10), "read from the database");
    assert_eq!(
        from_ring.into_iter().map(content).collect::<Vec<_>>(),
        from_database.into_iter().map(content).collect::<Vec<_>>(),
        "the same frames either way"
    );

    // With no ring at all, every resume reads the database.
    app.stop().await;
    let mut app = spawn_with(app.resources.clone(), |s| s.ws_replay_ring_mb = 0).await;
    app.publish("2/vehicle_log", json!({"n": 30}).to_string())
        .await;
    app.wait_rows("vehicle_logs", 31).await;
    let (frames, ring, database) = resume(&app, "/api/ws/vehicle/2?since=28", 31).await;
    assert_eq!(frames.len(), 2);
    assert_eq!((ring, database), (0, 2));
    app.stop().await;
}

/// Stores 30 vehicle_logs, replays them to two clients at once, checks that each got all 30 in
/// order, and returns the seconds replays waited for the budget meanwhile.
async fn two_replays_of_30(app: &mut TestApp) -> f64 {
    for i in 0..30 {
        app.publish("1/vehicle_log", json!({"n": i}).to_string())
            .await;
    }
    app.wait_rows("vehicle_logs", 30).await;
    const PACED: &str = "seano_ws_replay_paced_seconds_total";
    assert_eq!(app.metric_f64(PACED, "instance=").await, 0.0);
    let app = &*app;
    let (first, second) = tokio::join!(
        resume(app, "/api/ws?since=0", 30),
        resume(app, "/api/ws/vehicle/1?since=0", 30)
    );
    for (frames, ..) in [first, second] {
        let seqs: Vec<i64> = frames.iter().map(|f| f["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (1..=30).collect::<Vec<_>>(), "every frame, in order");
    }
    app.metric_f64(PACED, "instance=").await
}

#[actix_web::test]
async fn replays_share_one_budget_of_frames_per_second_and_still_send_everything() {
    // 20 frames per second over every replay: the first client's 30 take 1.5 s of it, so the
    // second client, resuming meanwhile, waits for its turn, then gets all of its frames too.
    let mut app = spawn_with(Resources::fresh().await, |s| s.ws_replay_rate = 20).await;
    assert!(
        two_replays_of_30(&mut app).await > 0.0,
        "one of the replays waited for the budget"
    );
    app.stop().await;
}

#[actix_web::test]
async fn while_the_store_is_behind_replays_take_the_smaller_budget() {
    // One message per batch: every batch is full, so once these are stored the store counts
    // as behind, and replays go at WS_REPLAY_RATE_BEHIND (20 frames per second) although
    // WS_REPLAY_RATE sets no limit.
    let mut app = spawn_with(Resources::fresh().await, |s| {
        s.ws_replay_rate = 0;
        s.ws_replay_rate_behind = 20;
        s.batch_max_messages = 1;
    })
    .await;
    assert!(
        two_replays_of_30(&mut app).await > 0.0,
        "a replay waited for the smaller budget"
    );
    app.stop().await;
}

#[actix_web::test]
async fn since_outside_the_replay_window_gets_a_resync_frame_then_live_data() {
    let mut app = spawn_with(Resources::fresh().await, |s| s.ws_replay_window = 5).await;
    for i in 0..10 {
        app.publish("1/raw_log", format!("m{i}")).await;
    }
    app.wait_rows("raw_logs", 10).await;
    for since in [1, 999] {
        let mut ws = app.connect_ws(&format!("/api/ws?since={since}")).await;
        ws.next_json().await;
        let resync = ws.next_json().await;
        assert_eq!(resync["type"], "resync");
        assert_eq!(
            (
                resync["since"].as_i64(),
                resync["last_seq"].as_i64(),
                resync["replay_window"].as_i64()
            ),
            (Some(since), Some(10), Some(5))
        );
    }
    let mut ws = app.connect_ws("/api/ws?since=6").await;
    ws.next_json().await;
    for seq in 7..=10 {
        assert_eq!(
            ws.next_data().await["seq"],
            seq,
            "inside the window it replays"
        );
    }
    app.publish("1/raw_log", "live").await;
    assert_eq!(ws.next_data().await["data"], "live");

    for (query, parameter) in [
        ("since=-1", "since"),
        ("since=abc", "since"),
        ("snapshot=all", "snapshot"),
    ] {
        let (status, body) = app.get(&format!("/api/ws?{query}")).await;
        assert_eq!(
            (status, body["parameter"].as_str()),
            (400, Some(parameter)),
            "{query}"
        );
    }
    app.stop().await;
}

/// A client told to resync reloads history up to the frame's `last_seq` over REST: its live
/// stream starts after it, even while those messages are still gathered for broadcast.
#[actix_web::test]
async fn after_a_resync_the_live_stream_starts_after_its_last_seq() {
    let mut app = spawn_with(Resources::fresh().await, |s| {
        s.ws_replay_window = 5;
        s.ws_gather_ms = 1_000;
    })
    .await;
    // A fleet client makes the hub gather commits for a second before it fans them out.
    let mut fleet = app.connect_ws("/api/ws").await;
    fleet.next_json().await;
    for i in 0..10 {
        app.publish("1/raw_log", format!("m{i}")).await;
    }
    app.wait_rows("raw_logs", 10).await;
    let mut ws = app.connect_ws("/api/ws?since=1").await;
    ws.next_json().await;
    let resync = ws.next_json().await;
    assert_eq!(
        (resync["type"].as_str(), resync["last_seq"].as_i64()),
        (Some("resync"), Some(10))
    );
    app.publish("1/raw_log", "after the resync").await;
    let live = ws.next_data().await;
    assert_eq!(
        (live["seq"].as_i64(), live["data"].as_str()),
        (Some(11), Some("after the resync")),
        "nothing the resync already covered"
    );
    app.stop().await;
}

#[actix_web::test]
async fn snapshot_latest_sends_each_vehicles_latest_state_before_live_data() {
    // A fleet client is connected, so the hub gathers commits for a second before it fans them
    // out: the snapshot below is read while what it shows is committed but not yet broadcast.
    let mut app = spawn_with(Resources::fresh().await, |s| s.ws_gather_ms = 1_000).await;
    let mut fleet = app.connect_ws("/api/ws").await;
    fleet.next_json().await;
    app.publish("3/raw_log", "no state for vehicle 3").await;
    app.publish("1/vehicle_log", r#"{"mode":"MANUAL"}"#).await;
    app.publish("2/vehicle_log", r#"{"mode":"AUTO"}"#).await;
    app.publish("1/vehicle_log", r#"{"mode":"GUIDED"}"#).await;
    app.wait_rows("vehicle_logs", 3).await;

    let mut ws = app.connect_ws("/api/ws?snapshot=latest").await;
    ws.next_json().await;
    let a = ws.next_json().await;
    let b = ws.next_json().await;
    assert_eq!(
        (
            a["vehicle_id"].as_i64(),
            a["data"]["mode"].as_str(),
            a["snapshot"].as_bool()
        ),
        (Some(2), Some("AUTO"), Some(true))
    );
    assert_eq!(
        (
            b["vehicle_id"].as_i64(),
            b["data"]["mode"].as_str(),
            b["snapshot"].as_bool()
        ),
        (Some(1), Some("GUIDED"), Some(true))
    );
    app.publish("2/vehicle_log", r#"{"mode":"RTL"}"#).await;
    let live = ws.next_json().await;
    assert_eq!(
        (live["data"]["mode"].as_str(), live.get("snapshot")),
        (Some("RTL"), None)
    );

    let mut one = app.connect_ws("/api/ws/vehicle/1?snapshot=latest").await;
    one.next_json().await;
    let snap = one.next_json().await;
    assert_eq!(
        (snap["vehicle_id"].as_i64(), snap["data"]["mode"].as_str()),
        (Some(1), Some("GUIDED"))
    );
    assert!(
        one.round_trip().await.is_empty(),
        "only vehicle 1's snapshot"
    );
    app.stop().await;
}

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
