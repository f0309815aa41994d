//! A crash (`kill -9`) under steady QoS 1 traffic: after a restart every message the broker
//! accepted is stored exactly once.

use sea_orm::{ConnectionTrait, Database, Statement};

use crate::helpers::{
    broker_for_process, numbered_message, wait_for, GatewayProcess, Publisher, Resources,
};

#[actix_web::test]
async fn kill_9_under_qos1_traffic_then_restart_stores_every_message_exactly_once() {
    let mut resources = Resources::fresh().await;
    // The broker must outlive the gateway and mark what it sends again DUP, as MQTT 3.1.1
    // requires (3.3.1.1): the embedded broker dies with the gateway, and rumqttd run on its own
    // resends from its log without DUP, so without TEST_MQTT_URL this is a Mosquitto of its own.
    let _broker = broker_for_process(&mut resources).await;
    let mut gateway = GatewayProcess::start(&resources).await;
    let db = Database::connect(&resources.database_url).await.unwrap();
    // Per table: rows, and distinct dedup keys (one per distinct topic + payload).
    let counts = |table: &'static str| {
        let db = db.clone();
        async move {
            let sql = format!("SELECT COUNT(*), COUNT(DISTINCT dedup_key) FROM {table}");
            let row = db
                .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
                .await
                .unwrap()
                .unwrap();
            let rows: i64 = row.try_get_by_index(0).unwrap();
            let distinct: i64 = row.try_get_by_index(1).unwrap();
            (rows as usize, distinct as usize)
        }
    };
    let stored = || async {
        let mut n = 0;
        for table in TABLES {
            n += counts(table).await.0;
        }
        n
    };

    // Within Mosquitto's default max_queued_messages (1000): past it the broker itself drops
    // QoS 1 messages for a session that is away, after acknowledging them to the publisher.
    // The three message types in turn, each payload distinct.
    let total = 900usize;
    let prefix = resources.prefix.clone();
    let mut publisher = Publisher::connect(resources.mqtt_url.as_deref().unwrap()).await;
    let publishing = tokio::spawn(async move {
        for i in 0..total {
            let (kind, payload) = numbered_message(i, i);
            publisher
                .send(&format!("{prefix}/1/{kind}"), payload.into_bytes())
                .await;
            if i % 50 == 49 {
                publisher.wait_acks(50).await;
            }
        }
    });

    wait_for("traffic to be flowing", || async { stored().await >= 200 }).await;
    gateway.kill_9();
    let stored_at_crash = stored().await;
    let gateway = GatewayProcess::start(&resources).await;
    publishing
        .await
        .expect("every publish was accepted by the broker");
    wait_for("every accepted message to be stored", || async {
        stored().await >= total
    })
    .await;

    for table in TABLES {
        let (rows, distinct) = counts(table).await;
        assert_eq!(
            distinct,
            total / 3,
            "{table}: none lost ({stored_at_crash} stored at the crash)"
        );
        assert_eq!(rows, total / 3, "{table}: none stored twice");
    }

    // The per-minute rollups count every stored message once: what the killed run had not
    // yet written to them was rolled up from the rows at the restart.
    // The running gateway writes its own figures within a second.
    let rolled = || async {
        let sql = "SELECT kind, SUM(count) FROM rollups GROUP BY kind ORDER BY kind";
        let rows = db
            .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get_by_index(0).unwrap();
                // SUM is numeric on PostgreSQL, integer on SQLite.
                let n = r
                    .try_get_by_index::<i64>(1)
                    .or_else(|_| {
                        r.try_get_by_index::<sea_orm::prelude::Decimal>(1)
                            .map(|d| d.to_string().parse().unwrap())
                    })
                    .unwrap();
                (kind, n)
            })
            .collect::<Vec<(String, i64)>>()
    };
    let third = (total / 3) as i64;
    wait_for("the rollups to count every stored message", || async {
        rolled().await.iter().map(|(_, n)| n).sum::<i64>() >= 3 * third
    })
    .await;
    let rolled = rolled().await;
    assert_eq!(
        rolled,
        [
            ("raw_log".to_owned(), third),
            ("sensor_log".to_owned(), third),
            ("vehicle_log".to_owned(), third)
        ]
    );

    let status = gateway.terminate().await;
    assert!(status.success(), "SIGTERM is a clean exit: {status:?}");
}

const TABLES: [&str; 3] = ["raw_logs", "sensor_logs", "vehicle_logs"];
