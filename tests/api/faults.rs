//! Faults injected on purpose: slow and silent clients, broker and database outages.

use serde_json::Value;

use crate::helpers::{
    keep_within_broker_queue, spawn_with, standalone_broker, wait_for, Publisher, Resources,
    TcpProxy, WsEvent,
};

#[actix_web::test]
async fn a_client_that_stops_reading_is_disconnected_and_the_others_miss_nothing() {
    let app = spawn_with(Resources::fresh().await, |s| {
        s.ws_client_queue = 256;
        s.ws_stall_timeout_secs = 2;
    })
    .await;
    let mut healthy = app.connect_ws("/api/ws").await;
    healthy.next_json().await;
    let mut stalled = app.connect_ws("/api/ws").await; // never read until the end
                                                       // Enough bytes to fill the stalled client's socket buffers and then its queue.
    let total = 2500;
    let mut publisher = Publisher::connect(&app.mqtt_url).await;
    let topic = format!("{}/1/raw_log", app.prefix);
    let line = "x".repeat(8000);
    // In steps of 20, reading each step before the next, so the healthy client is never far
    // behind however slow this machine is, while the stalled one falls further back each step.
    for step in 0..total / 20 {
        for i in step * 20..(step + 1) * 20 {
            publisher
                .send(&topic, format!("{i} {line}").into_bytes())
                .await;
        }
        publisher.wait_acks(20).await;
        for i in step * 20..(step + 1) * 20 {
            let frame = healthy.next_data().await;
            assert!(
                frame["data"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{i} ")),
                "frame {i} in order"
            );
        }
    }
    wait_for("the stalled client to be dropped", || async {
        app.get("/api/ws/stats").await.1["messages"]["slow_clients_dropped"] == 1
    })
    .await;
    let (_, stats) = app.get("/api/ws/stats").await;
    assert_eq!(stats["active_connections"], 1);
    // What the stalled client finally reads ends with the "slow consumer" close.
    let close = loop {
        if let WsEvent::Closed(reason) = stalled.next_event().await {
            break reason;
        }
    };
    assert_eq!(close.map(|r| u16::from(r.code)), Some(3001));
    let mut app = app;
    app.stop().await;
}

#[actix_web::test]
async fn a_client_that_answers_no_pings_is_closed_after_the_timeout() {
    let app = spawn_with(Resources::fresh().await, |s| {
        s.ws_heartbeat_secs = 1;
        s.ws_client_timeout_secs = 2;
    })
    .await;
    let mut silent = app.connect_ws("/api/ws").await; // reads nothing, answers nothing
    let mut alive = app.connect_ws("/api/ws").await;
    alive.next_json().await;
    // `alive` keeps reading in the background, and WsClient answers the pings it reads.
    let reader = actix_web::rt::spawn(async move {
        loop {
            if let WsEvent::Closed(reason) = alive.next_event().await {
                return reason;
            }
        }
    });
    wait_for("the silent client to be closed", || async {
        app.get("/api/ws/stats").await.1["active_connections"] == 1
    })
    .await;
    let close = loop {
        if let WsEvent::Closed(reason) = silent.next_event().await {
            break reason;
        }
    };
    assert_eq!(close.map(|r| u16::from(r.code)), Some(3002));
    let (_, stats) = app.get("/api/ws/stats").await;
    assert_eq!(
        stats["active_connections"], 1,
        "the client that answers pings is still served"
    );
    assert!(!reader.is_finished());
    let mut app = app;
    app.stop().await;
}

#[actix_web::test]
async fn a_broker_outage_is_reported_and_nothing_published_meanwhile_is_lost() {
    let mut resources = Resources::fresh().await;
    let broker = standalone_broker(&resources);
    let addr = broker.trim_start_matches("mqtt://").to_owned();
    let proxy = TcpProxy::start(addr).await;
    resources.mqtt_url = Some(format!("mqtt://127.0.0.1:{}", proxy.port));
    let app = spawn_with(resources, |_| {}).await;
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;
    // The vehicle talks to the broker directly; only the gateway's link is cut.
    let mut vehicle = Publisher::connect(&broker).await;
    let topic = format!("{}/3/raw_log", app.prefix);
    for i in 0..20 {
        vehicle
            .publish(&topic, format!("m{i:03}").into_bytes())
            .await;
    }
    for _ in 0..20 {
        ws.next_data().await;
    }

    proxy.cut();
    wait_for("the outage to be reported", || async {
        let (status, ready) = app.get("/ready").await;
        status == 503
            && ready["mqtt"] == false
            && app.get("/api/mqtt/status").await.1["connected"] == false
    })
    .await;
    assert_eq!(app.get("/health").await.0, 200, "the gateway stays up");
    for i in 20..120 {
        vehicle
            .publish(&topic, format!("m{i:03}").into_bytes())
            .await;
    }
    proxy.restore();

    let frames: Vec<Value> = {
        let mut v = Vec::new();
        for _ in 20..120 {
            v.push(ws.next_data().await);
        }
        v
    };
    let data: Vec<&str> = frames.iter().map(|f| f["data"].as_str().unwrap()).collect();
    let expected: Vec<String> = (20..120).map(|i| format!("m{i:03}")).collect();
    assert_eq!(
        data, expected,
        "every message published during the outage, in order"
    );
    app.wait_rows("raw_logs", 120).await;
    assert_eq!(app.get("/ready").await.0, 200);
    let mut app = app;
    app.stop().await;
}

#[actix_web::test]
async fn a_database_outage_stops_acks_and_broadcasts_until_it_returns_and_loses_nothing() {
    let mut resources = Resources::fresh().await;
    if !resources.database_url.starts_with("postgres") {
        eprintln!("skipped: a database outage needs a server database (set TEST_DATABASE_URL)");
        return;
    }
    let mut url = url::Url::parse(&resources.database_url).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let proxy = TcpProxy::start(upstream).await;
    url.set_port(Some(proxy.port)).unwrap();
    let direct = resources.database_url.clone();
    resources.database_url = url.to_string();
    let mut app = spawn_with(resources, |_| {}).await;
    app.db = sea_orm::Database::connect(&direct).await.unwrap();
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;
    for i in 0..10 {
        app.publish("5/raw_log", format!("d{i:02}")).await;
    }
    for _ in 0..10 {
        ws.next_data().await;
    }

    proxy.cut();
    for i in 10..40 {
        app.publish("5/raw_log", format!("d{i:02}")).await;
    }
    wait_for("the failing commits to be reported", || async {
        let (_, stats) = app.get("/api/ws/stats").await;
        let (status, ready) = app.get("/ready").await;
        stats["messages"]["commit_failures"].as_u64() > Some(0)
            && status == 503
            && ready["database"] == false
    })
    .await;
    assert!(
        ws.round_trip().await.is_empty(),
        "nothing is broadcast before it is committed"
    );
    assert_eq!(app.count("raw_logs").await, 10);

    proxy.restore();
    for i in 10..40 {
        assert_eq!(ws.next_data().await["data"], format!("d{i:02}"));
    }
    app.wait_rows("raw_logs", 40).await;
    app.stop().await;
}

#[actix_web::test]
async fn a_conflating_client_that_falls_behind_skips_to_the_latest_and_stays_connected() {
    let app = spawn_with(Resources::fresh().await, |s| s.ws_client_queue = 32).await;
    let mut lagging = app
        .connect_ws("/api/ws?conflate=latest&types=vehicle_log")
        .await;
    let total = 1500;
    let mut publisher = Publisher::connect(&app.mqtt_url).await;
    let pad = "x".repeat(8000);
    for i in 0..total {
        let payload = serde_json::json!({"n": i, "pad": pad}).to_string();
        publisher
            .send(
                &format!("{}/{}/vehicle_log", app.prefix, 1 + i % 2),
                payload.into_bytes(),
            )
            .await;
        if i % 50 == 49 {
            publisher.wait_acks(50).await;
            keep_within_broker_queue(&app.db, i + 1).await;
        }
    }
    // Read everything: queued frames, then the notice, then the latest of each vehicle.
    lagging.next_json().await;
    let mut seen = Vec::new();
    let mut skipped = 0;
    let mut last_seq = 0;
    while seen.iter().filter(|n| **n >= total - 2).count() < 2 {
        let frame = lagging.next_json().await;
        match frame["type"].as_str() {
            Some("conflated") => skipped += frame["skipped"].as_u64().unwrap(),
            Some("vehicle_log") => {
                let seq = frame["seq"].as_i64().unwrap();
                assert!(seq > last_seq, "frames stay in seq order");
                last_seq = seq;
                seen.push(frame["data"]["n"].as_i64().unwrap());
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert!(
        skipped > 0,
        "it fell behind and was told how many it skipped"
    );
    assert_eq!(
        seen.len() as u64 + skipped,
        total as u64,
        "every message either arrived or was counted as skipped"
    );
    let (_, stats) = app.get("/api/ws/stats").await;
    assert_eq!(stats["messages"]["slow_clients_dropped"], 0);
    assert_eq!(stats["messages"]["frames_conflated"], skipped);
    assert_eq!(stats["active_connections"], 1, "still connected");
    let mut app = app;
    app.stop().await;
}

#[actix_web::test]
async fn a_client_that_floods_requests_is_rate_limited_and_stays_connected() {
    let mut app = spawn_with(Resources::fresh().await, |s| {
        s.ws_client_rate = 5;
        s.ws_client_burst = 10;
    })
    .await;
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;
    for i in 0..200 {
        ws.send_json(serde_json::json!({"type": "ping", "timestamp": i}))
            .await;
    }
    let mut pongs = 0;
    let notice = loop {
        let frame = ws.next_json().await;
        match frame["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") => break frame,
            other => panic!("unexpected frame {other:?}"),
        }
    };
    assert!(
        notice["message"]
            .as_str()
            .unwrap()
            .starts_with("Rate limit exceeded"),
        "{notice}"
    );
    assert!(
        pongs <= 12,
        "about the burst is answered, not the flood: {pongs}"
    );
    app.publish("1/raw_log", "still served").await;
    assert_eq!(ws.next_data().await["data"], "still served");
    let (_, stats) = app.get("/api/ws/stats").await;
    assert!(
        stats["messages"]["client_messages_dropped"]
            .as_u64()
            .unwrap()
            > 0
    );
    app.stop().await;
}

#[actix_web::test]
async fn ready_fails_while_ingest_is_stalled_and_recovers() {
    use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
    let mut app = spawn_with(Resources::fresh().await, |s| s.ingest_stall_secs = 1).await;
    app.publish("6/raw_log", "before").await;
    app.wait_rows("raw_logs", 1).await;

    // Another writer holds the seq cursor: the gateway's commits wait behind it.
    let blocker = app.db.begin().await.unwrap();
    let backend = app.db.get_database_backend();
    blocker
        .execute_raw(Statement::from_string(
            backend,
            "UPDATE seq_cursor SET value = value WHERE id = 1".to_owned(),
        ))
        .await
        .unwrap();
    app.publish("6/raw_log", "stuck").await;
    wait_for("the stall to be reported", || async {
        let (status, ready) = app.get("/ready").await;
        status == 503 && ready["ingest"] == false && ready["ingest_in_flight"].as_i64() > Some(0)
    })
    .await;
    blocker.rollback().await.unwrap();

    app.wait_rows("raw_logs", 2).await;
    wait_for("readiness to come back", || async {
        app.get("/ready").await.0 == 200
    })
    .await;
    let (_, stats) = app.get("/api/ws/stats").await;
    assert!(
        stats["messages_per_second_by_vehicle"]["6"].as_f64() > Some(0.0),
        "{stats}"
    );
    let metrics = app.metrics().await;
    for line in [
        "seano_commit_seconds_count",
        "seano_batch_size_bucket{instance=\"test-gw\",le=\"+Inf\"}",
        "seano_broadcast_lag_seconds_sum",
    ] {
        assert!(metrics.contains(line), "/metrics has {line}");
    }
    app.stop().await;
}
