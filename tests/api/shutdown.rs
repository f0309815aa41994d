//! Graceful shutdown and restart: nothing lost, nothing duplicated, seq never goes back.

use std::collections::BTreeSet;

use sea_orm::{EntityTrait, QueryOrder};

use crate::helpers::{spawn_app, spawn_with, wait_for, Publisher, WsEvent};

#[actix_web::test]
async fn a_graceful_restart_under_qos1_traffic_loses_and_duplicates_nothing() {
    let mut app = spawn_app().await;
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;

    // A vehicle publishing steadily at QoS 1 for the whole test.
    let total = 600usize;
    let topic = format!("{}/1/raw_log", app.prefix);
    let mut publisher = Publisher::connect(&app.mqtt_url).await;
    let publishing = tokio::spawn(async move {
        for i in 0..total {
            publisher
                .send(&topic, format!("msg-{i:04}").into_bytes())
                .await;
            if i % 20 == 19 {
                publisher.wait_acks(20).await;
            }
        }
    });

    wait_for("some messages to be stored", || async {
        app.count("raw_logs").await >= 100
    })
    .await;
    let resources = app.resources.clone();
    app.stop().await;
    match ws.next_event().await {
        WsEvent::Closed(Some(reason)) => assert_eq!(u16::from(reason.code), 1001),
        WsEvent::Closed(None) => panic!("closed without a code"),
        WsEvent::Json(_) => {
            // Frames committed before the close may still be in flight; the close follows.
            loop {
                if let WsEvent::Closed(reason) = ws.next_event().await {
                    assert_eq!(reason.map(|r| u16::from(r.code)), Some(1001));
                    break;
                }
            }
        }
    }
    let stored_before = app.count("raw_logs").await;

    let app = spawn_with(resources, |_| {}).await;
    publishing.await.expect("the publisher finishes");
    wait_for("every message to be stored", || async {
        app.count("raw_logs").await >= total as i64
    })
    .await;

    let rows = entity::raw_log::Entity::find()
        .order_by_asc(entity::raw_log::Column::Seq)
        .all(&app.db)
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        total,
        "exactly once: {} stored before the restart",
        stored_before
    );
    let distinct: BTreeSet<_> = rows.iter().map(|r| r.data.as_str()).collect();
    assert_eq!(distinct.len(), total, "no duplicates");
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=total as i64).collect::<Vec<_>>(),
        "seq is gap-free and survives the restart"
    );
    // Per-vehicle order is the publish order.
    let data: Vec<&str> = rows.iter().map(|r| r.data.as_str()).collect();
    let mut sorted = data.clone();
    sorted.sort();
    assert_eq!(data, sorted);
    let mut app = app;
    app.stop().await;
}

#[actix_web::test]
async fn shutdown_refuses_new_streams_and_sends_live_clients_the_last_committed_frames() {
    use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
    let mut app = spawn_app().await;
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;

    // Another writer holds the seq cursor, so the shutdown's drain waits on a commit and the
    // server stays up long enough to be asked.
    let blocker = app.db.begin().await.unwrap();
    blocker
        .execute_raw(Statement::from_string(
            app.db.get_database_backend(),
            "UPDATE seq_cursor SET value = value WHERE id = 1".to_owned(),
        ))
        .await
        .unwrap();
    app.publish("3/raw_log", "in flight at shutdown").await;
    wait_for("the message to reach the store", || async {
        app.get("/ready").await.1["ingest_in_flight"].as_i64() > Some(0)
    })
    .await;
    app.shutdown.cancel();
    let (status, ready) = app.get("/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["shutting_down"], true, "{ready}");
    let (status, body) = app.get("/api/ws").await;
    assert_eq!(status, 503, "a new stream is refused: {body}");

    // The drain commits the in-flight message; the live client gets it, then the 1001.
    blocker.rollback().await.unwrap();
    let frame = ws.next_data().await;
    assert_eq!(frame["data"], "in flight at shutdown");
    match ws.next_event().await {
        WsEvent::Closed(Some(reason)) => assert_eq!(u16::from(reason.code), 1001),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
    app.stop().await;
    assert_eq!(
        app.count("raw_logs").await,
        1,
        "the in-flight message was committed"
    );
}
