//! Two gateway instances (processes of the real binary) in one MQTT shared group, on one
//! PostgreSQL and a Mosquitto: every message is stored once, under one gap-free seq, and every
//! client on either instance receives every message once, in seq order, also across a `kill -9`
//! of one instance and a lost wake-up.
//!
//! The two-instance tests need PostgreSQL (TEST_DATABASE_URL): on SQLite a shared group is
//! refused at start-up (`config.rs` tests that), so there they only say they were skipped. The
//! cluster view's liveness rule runs on both databases.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::Value;

use crate::helpers::{
    numbered_message, spawn_app, wait_for, GatewayProcess, PrivateMosquitto, Publisher, Resources,
    TcpProxy, WsClient, TEST_INSTANCE,
};

/// 20 vehicles publishing QoS 1 at 5 Hz each.
const VEHICLES: usize = 20;
const HZ: u64 = 5;

/// Resources on PostgreSQL and a Mosquitto of the test's own, or `None` without PostgreSQL.
pub async fn postgres_and_mosquitto() -> Option<(Resources, PrivateMosquitto)> {
    if !std::env::var("TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres")) {
        eprintln!("skipped: several instances need PostgreSQL (set TEST_DATABASE_URL)");
        return None;
    }
    let broker = PrivateMosquitto::start().await;
    let mut resources = Resources::fresh().await;
    resources.mqtt_url = Some(broker.url.clone());
    Some((resources, broker))
}

pub async fn instance(resources: &Resources, id: &str) -> GatewayProcess {
    GatewayProcess::start_with(
        resources,
        &[("INSTANCE_ID", id), ("MQTT_SHARED_GROUP", "gateways")],
    )
    .await
}

fn ws(gateway: &GatewayProcess, path: &str) -> String {
    format!("ws://127.0.0.1:{}{path}", gateway.port)
}

async fn get(gateway: &GatewayProcess, path: &str) -> (u16, String) {
    let mut resp = awc::Client::default()
        .get(format!("http://127.0.0.1:{}{path}", gateway.port))
        .send()
        .await
        .expect("HTTP request");
    let body = resp.body().await.expect("HTTP body");
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Publishes messages `messages` (indexes), `VEHICLES` at a time every 1/HZ s (vehicle ids
/// 1..=20, the three types in turn, each index's payload distinct), waiting for the broker's acks.
fn publish(
    url: String,
    prefix: String,
    messages: std::ops::Range<usize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut publisher = Publisher::connect(&url).await;
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(1000 / HZ));
        let (mut i, total) = (messages.start, messages.end);
        while i < total {
            tick.tick().await;
            let round = (total - i).min(VEHICLES);
            for _ in 0..round {
                let vehicle = i % VEHICLES + 1;
                let (kind, payload) = numbered_message(i / VEHICLES, i);
                publisher
                    .send(&format!("{prefix}/{vehicle}/{kind}"), payload.into_bytes())
                    .await;
                i += 1;
            }
            publisher.wait_acks(round).await;
        }
    })
}

/// Every stored (seq, vehicle) pair, and how many rows the three tables hold.
async fn stored(db: &DatabaseConnection) -> Vec<(i64, i64)> {
    let sql =
        "SELECT seq, vehicle_id FROM raw_logs UNION ALL SELECT seq, vehicle_id FROM sensor_logs \
               UNION ALL SELECT seq, vehicle_id FROM vehicle_logs ORDER BY 1";
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        (
            r.try_get_by_index::<i64>(0).unwrap(),
            r.try_get_by_index::<i64>(1).unwrap(),
        )
    })
    .collect()
}

/// Rows, and distinct (vehicle, topic + payload) keys: equal when nothing was stored twice.
async fn rows_and_distinct(db: &DatabaseConnection) -> (i64, i64) {
    let mut rows = 0;
    let mut distinct = 0;
    for table in ["raw_logs", "sensor_logs", "vehicle_logs"] {
        let sql = format!("SELECT COUNT(*), COUNT(DISTINCT (vehicle_id, dedup_key)) FROM {table}");
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
            .unwrap();
        rows += row.try_get_by_index::<i64>(0).unwrap();
        distinct += row.try_get_by_index::<i64>(1).unwrap();
    }
    (rows, distinct)
}

/// Waits until `total` messages are stored, checks that they hold seqs 1..=total, each once (one
/// gap-free seq across the writers), and that none was stored twice; returns them.
async fn all_stored_once(db: &DatabaseConnection, total: usize) -> Vec<(i64, i64)> {
    wait_for("every message to be stored", || async {
        stored(db).await.len() >= total
    })
    .await;
    let stored = stored(db).await;
    let seqs: Vec<i64> = stored.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=total as i64).collect::<Vec<_>>(),
        "seqs 1..={total}, each once"
    );
    assert_eq!(
        rows_and_distinct(db).await,
        (total as i64, total as i64),
        "none stored twice"
    );
    stored
}

/// Reads data frames until the client has seen seq `last`; returns their seqs in arrival order.
async fn seqs_until(client: &mut WsClient, last: i64, seen: &mut Vec<i64>) {
    while seen.last().is_none_or(|s| *s < last) {
        let frame: Value = client.next_data().await;
        seen.push(frame["seq"].as_i64().expect("a seq"));
    }
}

/// The seqs stored for `vehicle` (all vehicles when `None`), in order.
fn expected(stored: &[(i64, i64)], vehicle: Option<i64>) -> Vec<i64> {
    stored
        .iter()
        .filter(|(_, v)| vehicle.is_none_or(|want| *v == want))
        .map(|(seq, _)| *seq)
        .collect()
}

#[actix_web::test]
async fn two_instances_store_each_message_once_and_every_client_gets_all_in_seq_order() {
    let Some((resources, _broker)) = postgres_and_mosquitto().await else {
        return;
    };
    let a = instance(&resources, "gw-a").await;
    let b = instance(&resources, "gw-b").await;
    // Fleet and vehicle streams on both instances.
    let mut clients = vec![
        (WsClient::connect(&ws(&a, "/api/ws")).await, None),
        (
            WsClient::connect(&ws(&a, "/api/ws/vehicle/3")).await,
            Some(3),
        ),
        (WsClient::connect(&ws(&b, "/api/ws")).await, None),
        (
            WsClient::connect(&ws(&b, "/api/ws/vehicle/17")).await,
            Some(17),
        ),
    ];

    let total = VEHICLES * HZ as usize * 4; // 4 s of traffic
    publish(
        resources.mqtt_url.clone().unwrap(),
        resources.prefix.clone(),
        0..total,
    )
    .await
    .expect("every publish was acknowledged by the broker");
    let db = Database::connect(&resources.database_url).await.unwrap();
    let stored = all_stored_once(&db, total).await;

    for (client, vehicle) in &mut clients {
        let want = expected(&stored, *vehicle);
        let mut got = Vec::new();
        seqs_until(client, *want.last().unwrap(), &mut got).await;
        assert_eq!(
            got, want,
            "client of vehicle {vehicle:?}: every message once, in seq order"
        );
    }

    // Both took part in ingest, and both say who they are.
    let (status, body) = get(&a, "/api/cluster").await;
    assert_eq!(status, 200, "{body}");
    let cluster: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cluster["instance_id"], "gw-a");
    wait_for("both heartbeats to show what each stored", || async {
        let cluster: Value = serde_json::from_str(&get(&a, "/api/cluster").await.1).unwrap();
        let by_id: BTreeMap<String, i64> = cluster["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["instance_id"].as_str().unwrap().to_owned(),
                    i["messages_stored"].as_i64().unwrap(),
                )
            })
            .collect();
        by_id.keys().cloned().collect::<Vec<_>>() == ["gw-a", "gw-b"]
            && by_id.values().all(|n| *n > 0)
            && by_id.values().sum::<i64>() == total as i64
    })
    .await;
    let stats: Value = serde_json::from_str(&get(&b, "/api/ws/stats").await.1).unwrap();
    assert_eq!(stats["instance_id"], "gw-b");
    assert_eq!(stats["mqtt"]["shared_group"], "gateways");
    let client_id = stats["mqtt"]["client_id"].as_str().unwrap();
    assert!(client_id.ends_with("-gw-b"), "{client_id}");
    let metrics = get(&b, "/metrics").await.1;
    assert!(
        metrics.contains("seano_last_seq{instance=\"gw-b\"}"),
        "every sample carries the instance label"
    );

    // An instance that stops leaves the cluster view.
    let status = b.terminate().await;
    assert!(status.success(), "{status:?}");
    let cluster: Value = serde_json::from_str(&get(&a, "/api/cluster").await.1).unwrap();
    let ids: Vec<&str> = cluster["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gw-a"]);
}

#[actix_web::test]
async fn kill_9_of_one_instance_under_load_loses_nothing_and_its_clients_resume_on_the_other() {
    let Some((resources, _broker)) = postgres_and_mosquitto().await else {
        return;
    };
    let mut a = instance(&resources, "gw-a").await;
    let b = instance(&resources, "gw-b").await;
    let mut on_a = WsClient::connect(&ws(&a, "/api/ws")).await;
    let mut on_b = WsClient::connect(&ws(&b, "/api/ws/vehicle/5")).await;

    let total = VEHICLES * HZ as usize * 6; // 6 s of traffic
    let publishing = publish(
        resources.mqtt_url.clone().unwrap(),
        resources.prefix.clone(),
        0..total,
    );
    let db = Database::connect(&resources.database_url).await.unwrap();
    // A's client reads until the crash; what it saw last is where it resumes.
    let mut seen_a = Vec::new();
    seqs_until(&mut on_a, 150, &mut seen_a).await;
    a.kill_9();
    drop(on_a);
    let since = *seen_a.last().unwrap();
    let mut resumed = WsClient::connect(&ws(&b, &format!("/api/ws?since={since}"))).await;
    // A comes back with the same INSTANCE_ID, so its session and what it holds come back too.
    let a = instance(&resources, "gw-a").await;
    publishing
        .await
        .expect("every publish was acknowledged by the broker");
    let stored = all_stored_once(&db, total).await;

    seqs_until(&mut resumed, total as i64, &mut seen_a).await;
    assert_eq!(
        seen_a,
        expected(&stored, None),
        "A's client, resumed on B with since=: no gap, no duplicate"
    );
    let want = expected(&stored, Some(5));
    let mut seen_b = Vec::new();
    seqs_until(&mut on_b, *want.last().unwrap(), &mut seen_b).await;
    assert_eq!(seen_b, want, "B's client missed nothing during A's crash");
    drop(a);
}

#[actix_web::test]
async fn a_lost_wake_up_delays_but_loses_nothing() {
    let Some((resources, _broker)) = postgres_and_mosquitto().await else {
        return;
    };
    let _a = instance(&resources, "gw-a").await;
    // B reaches PostgreSQL through a proxy the test cuts: its LISTEN connection (and pool) drop,
    // so the notifications of A's commits meanwhile never reach it.
    let url = url::Url::parse(&resources.database_url).unwrap();
    let proxy = TcpProxy::start(format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port().unwrap_or(5432)
    ))
    .await;
    let mut via_proxy = url.clone();
    via_proxy.set_port(Some(proxy.port)).unwrap();
    let b = GatewayProcess::start_with(
        &resources,
        &[
            ("INSTANCE_ID", "gw-b"),
            ("MQTT_SHARED_GROUP", "gateways"),
            ("DATABASE_URL", via_proxy.as_str()),
        ],
    )
    .await;
    let mut on_b = WsClient::connect(&ws(&b, "/api/ws")).await;

    let total = VEHICLES * HZ as usize * 2;
    let first = publish(
        resources.mqtt_url.clone().unwrap(),
        resources.prefix.clone(),
        0..total / 2,
    );
    let mut seen = Vec::new();
    seqs_until(&mut on_b, 20, &mut seen).await;
    proxy.cut();
    let db = Database::connect(&resources.database_url).await.unwrap();
    let at_cut = stored(&db).await.len();
    first.await.unwrap();
    // A stores its share while B can neither store nor hear of A's commits.
    wait_for("A to store while B is cut off", || async {
        stored(&db).await.len() >= at_cut + 10
    })
    .await;
    proxy.restore();
    publish(
        resources.mqtt_url.clone().unwrap(),
        resources.prefix.clone(),
        total / 2..total,
    )
    .await
    .unwrap();
    let stored = all_stored_once(&db, total).await;
    seqs_until(&mut on_b, total as i64, &mut seen).await;
    assert_eq!(
        seen,
        expected(&stored, None),
        "B's client: every message once, in order"
    );
    let distinct: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), total);
}

#[actix_web::test]
async fn the_cluster_view_lists_instances_with_a_recent_heartbeat_only() {
    let mut app = spawn_app().await;
    // Another instance's heartbeat 1 s old, and one that stopped heartbeating 60 s ago.
    let now = chrono::Utc::now();
    for (id, age) in [("gw-live", 1), ("gw-dead", 60)] {
        let at = (now - chrono::Duration::seconds(age)).to_rfc3339();
        let sql = format!(
            "INSERT INTO gateway_instances (instance_id, client_id, shared_group, started_at, \
             heartbeat_at, connections, messages_stored, frames_sent, stored_per_second, \
             frames_per_second, last_seq) VALUES ('{id}', 'c-{id}', 'g', '{at}', '{at}', 3, 10, \
             30, 1.5, 4.5, 10)"
        );
        app.db
            .execute_raw(Statement::from_string(app.db.get_database_backend(), sql))
            .await
            .unwrap();
    }
    let _ws = app.connect_ws("/api/ws").await;
    wait_for(
        "this instance's heartbeat to count its connection",
        || async {
            let (status, cluster) = app.get("/api/cluster").await;
            assert_eq!(status, 200, "{cluster}");
            let instances = cluster["instances"].as_array().unwrap();
            let ids: Vec<&str> = instances
                .iter()
                .map(|i| i["instance_id"].as_str().unwrap())
                .collect();
            assert_eq!(
                ids,
                ["gw-live", TEST_INSTANCE],
                "the silent one is left out"
            );
            cluster["instance_id"] == TEST_INSTANCE && instances[1]["connections"] == 1
        },
    )
    .await;
    app.stop().await;
}
