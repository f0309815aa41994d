//! Pressure from both ends: a backlog released at once must not cost reading clients their
//! connection, and a database that takes nothing must not make ingest deaf to the broker.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;

use crate::helpers::{
    broker_for_process, hold_seq_cursor, spawn_with, wait_for, GatewayProcess, PrivateMosquitto,
    Publisher, Resources, WsClient,
};

/// Reads `n` data frames; returns (vehicle, data) in arrival order, checking seq increases.
async fn read_all(mut ws: WsClient, n: usize) -> (WsClient, Vec<(i64, String)>) {
    let mut got = Vec::with_capacity(n);
    let mut last_seq = 0;
    while got.len() < n {
        let f = ws.next_data().await;
        let seq = f["seq"].as_i64().unwrap();
        assert!(seq > last_seq, "seq order: {seq} after {last_seq}");
        last_seq = seq;
        got.push((
            f["vehicle_id"].as_i64().unwrap(),
            f["data"].as_str().unwrap().to_owned(),
        ));
    }
    (ws, got)
}

#[actix_web::test]
async fn a_backlog_released_at_once_reaches_every_reading_client_without_a_disconnect() {
    // On Mosquitto, one of the test's own that sends the whole backlog without waiting for acks
    // (the stock one keeps 20 in flight); the embedded broker keeps 500 in flight.
    let private = match std::env::var("TEST_MQTT_URL") {
        Ok(u) if !u.is_empty() => Some(PrivateMosquitto::start().await),
        _ => None,
    };
    let mut resources = Resources::fresh().await;
    resources.mqtt_url = private.as_ref().map(|b| b.url.clone());
    // Smaller than any burst the broker releases, so every fleet client overflows.
    let mut app = spawn_with(resources, |s| s.ws_client_queue = 16).await;
    let (vehicles, per_vehicle) = (5i64, 1000usize);
    let mut clients = Vec::new();
    for i in 0..50i64 {
        let path = if i < 25 {
            "/api/ws".to_owned()
        } else {
            format!("/api/ws/vehicle/{}", i % vehicles + 1)
        };
        let mut ws = app.connect_ws(&path).await;
        ws.next_json().await;
        clients.push((i, ws));
    }
    let mut silent = app.connect_ws("/api/ws").await; // never reads until the end
    silent.next_json().await;

    // The database takes nothing while the backlog piles up in front of it.
    let blocker = hold_seq_cursor(&app.db).await;
    let mut publisher = Publisher::connect(&app.mqtt_url).await;
    for i in 0..per_vehicle {
        for v in 1..=vehicles {
            let topic = format!("{}/{v}/raw_log", app.prefix);
            publisher
                .send(&topic, format!("{v}-{i:04}").into_bytes())
                .await;
        }
        if i % 20 == 19 {
            publisher.wait_acks(20 * vehicles as usize).await;
        }
    }
    let total = per_vehicle * vehicles as usize;
    wait_for("a backlog to pile up in front of the database", || async {
        app.get("/ready").await.1["ingest_in_flight"].as_i64() >= Some(50)
    })
    .await;
    blocker.rollback().await.unwrap();

    let reads = clients.into_iter().map(|(i, ws)| async move {
        let n = if i < 25 { total } else { per_vehicle };
        (i, read_all(ws, n).await)
    });
    let mut still_open = Vec::new();
    for (i, (mut ws, got)) in join_all(reads).await {
        let mut by_vehicle: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for (v, data) in got {
            by_vehicle.entry(v).or_default().push(data);
        }
        for (v, lines) in &by_vehicle {
            let expected: Vec<String> = (0..per_vehicle).map(|k| format!("{v}-{k:04}")).collect();
            assert_eq!(
                lines, &expected,
                "client {i}, vehicle {v}: every message once, in order"
            );
        }
        let wanted = if i < 25 { vehicles as usize } else { 1 };
        assert_eq!(by_vehicle.len(), wanted, "client {i}");
        assert!(ws.round_trip().await.is_empty(), "client {i}: nothing more");
        still_open.push(ws);
    }
    let (_, stats) = app.get("/api/ws/stats").await;
    assert_eq!(stats["messages"]["slow_clients_dropped"], 0, "{stats}");
    if private.is_some() {
        // Mosquitto releases the whole backlog at once (rumqttd only as acks come back).
        assert!(
            stats["messages"]["clients_caught_up"].as_u64() > Some(0),
            "the burst overflowed queues and was caught up from the database: {stats}"
        );
    }
    assert_eq!(stats["active_connections"], 51);
    drop(silent);
    app.stop().await;
    drop(private);
}

#[actix_web::test]
async fn ingest_keeps_its_broker_session_through_a_database_outage_and_loses_nothing() {
    if !std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        // SQLite has no outage short of a lock, and its readers (this test's) time out on one.
        eprintln!("skipped: a database outage needs a server database (set TEST_DATABASE_URL)");
        return;
    }
    // On Mosquitto, one of the test's own whose queue holds the whole outage's traffic.
    let private = match std::env::var("TEST_MQTT_URL") {
        Ok(u) if !u.is_empty() => Some(PrivateMosquitto::start().await),
        _ => None,
    };
    let mut resources = Resources::fresh().await;
    resources.mqtt_url = private.as_ref().map(|b| b.url.clone());
    let mut app = spawn_with(resources, |s| {
        s.mqtt_keep_alive_secs = 5;
        s.ingest_stall_secs = 1;
    })
    .await;
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;

    // 50 vehicles publishing QoS 1 as fast as the broker takes it, until told to stop.
    let vehicles = 50usize;
    let prefix = app.prefix.clone();
    let mut publisher = Publisher::connect(&app.mqtt_url).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let publishing = actix_web::rt::spawn(async move {
        let mut sent = 0usize;
        while !stopped.is_cancelled() {
            for _ in 0..200 {
                let topic = format!("{prefix}/{}/raw_log", sent % vehicles + 1);
                publisher
                    .send(&topic, format!("m{sent:07}").into_bytes())
                    .await;
                sent += 1;
            }
            publisher.wait_acks(200).await;
        }
        sent
    });
    wait_for("traffic to flow", || async {
        app.count("raw_logs").await > 0
    })
    .await;

    // The database takes nothing: first until the store holds more than its queue (10,000),
    // after which a task that waited for room in the queue would stop polling the broker within
    // a batch (2,000 messages); then for more than three keep-alives.
    let blocker = hold_seq_cursor(&app.db).await;
    let stored_at_start = app.count("raw_logs").await;
    let full = tokio::time::Instant::now() + Duration::from_secs(120);
    while app.get("/ready").await.1["ingest_in_flight"].as_i64() <= Some(10_000) {
        assert!(
            tokio::time::Instant::now() < full,
            "the store's queue never filled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let outage = tokio::time::Instant::now();
    let mut seen_not_ready = false;
    let mut largest_backlog = 0;
    while outage.elapsed() < Duration::from_secs(16) {
        let (_, status) = app.get("/api/mqtt/status").await;
        assert_eq!(status["connected"], true, "{status}");
        largest_backlog = largest_backlog.max(status["backlog"].as_u64().unwrap_or(0));
        let (code, ready) = app.get("/ready").await;
        seen_not_ready |= code == 503 && ready["ingest"] == false;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(seen_not_ready, "/ready said ingest was stalled");
    assert_eq!(
        app.count("raw_logs").await,
        stored_at_start,
        "nothing committed meanwhile"
    );
    blocker.rollback().await.unwrap();
    stop.cancel();
    let total = publishing.await.unwrap();
    wait_for("every message to be stored", || async {
        app.count("raw_logs").await >= total as i64
    })
    .await;
    assert_eq!(
        app.count("raw_logs").await,
        total as i64,
        "nothing stored twice"
    );
    let mut seen = Vec::with_capacity(total);
    let mut last_seq = 0;
    while seen.len() < total {
        let f: Value = ws.next_data().await;
        let seq = f["seq"].as_i64().unwrap();
        assert!(seq > last_seq);
        last_seq = seq;
        seen.push(f["data"].as_str().unwrap().to_owned());
    }
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len(),
        total,
        "every message broadcast once, after its commit"
    );
    // A gateway that stopped polling would have looked connected throughout (the broker's drop
    // goes unnoticed until the poll loop runs again): the count of lost connections tells.
    let (_, status) = app.get("/api/mqtt/status").await;
    assert_eq!(
        status["connections_lost"], 0,
        "the broker kept the session through the outage: {status}"
    );
    assert!(
        largest_backlog > 0,
        "the MQTT task held a backlog meanwhile"
    );
    assert_eq!(status["backlog"], 0, "{status}");
    app.stop().await;
    drop(private);
}

/// Readers cannot starve ingest of the database: with every connection of the shared pool
/// taken (as a thousand lagging clients paging their catch-up from the database did), messages
/// are still stored and streamed, since the store writer has a connection of its own.
#[actix_web::test]
async fn messages_are_stored_while_readers_hold_every_shared_connection() {
    use sea_orm::{DbBackend, TransactionTrait};
    let mut app = spawn_with(Resources::fresh().await, |_| {}).await;
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;
    let size = match app.app_db.get_database_backend() {
        DbBackend::Sqlite => app
            .app_db
            .get_sqlite_connection_pool()
            .options()
            .get_max_connections(),
        _ => app
            .app_db
            .get_postgres_connection_pool()
            .options()
            .get_max_connections(),
    };
    let mut held = Vec::new();
    for _ in 0..size {
        held.push(app.app_db.begin().await.unwrap());
    }
    app.publish("7/raw_log", "stored anyway").await;
    let frame = ws.next_data().await;
    assert_eq!(frame["data"], "stored anyway");
    assert_eq!(frame["vehicle_id"], 7);
    drop(held);
}

/// With both cores busy, storing comes first: the HTTP workers (streams and REST) run
/// `HTTP_WORKER_NICE` (10) below the main thread, which takes messages in and stores them.
#[actix_web::test]
async fn http_workers_run_at_a_lower_priority_than_the_threads_that_store() {
    let mut resources = Resources::fresh().await;
    let _broker = broker_for_process(&mut resources).await;
    let gateway = GatewayProcess::start(&resources).await;
    let pid = gateway.child.id();
    // (name, nice) from /proc/PID/task/TID/stat: the name is in parentheses, and the nice value
    // is the 19th field, the 17th after them.
    let thread = |tid: &str| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_owned();
        let nice: i64 = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
        (name, nice)
    };
    let threads: Vec<(String, i64)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| thread(&e.unwrap().file_name().to_string_lossy()))
        .collect();
    let (_, main) = thread(&pid.to_string());
    let workers: Vec<i64> = threads
        .iter()
        .filter(|(name, _)| name.starts_with("actix-rt|system"))
        .map(|(_, nice)| *nice)
        .collect();
    assert!(!workers.is_empty(), "no HTTP worker among {threads:?}");
    assert!(
        workers.iter().all(|&n| n == (main + 10).min(19)),
        "workers at {workers:?}, main thread at {main}: {threads:?}"
    );
    gateway.terminate().await;
}
