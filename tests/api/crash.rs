//! A crash (`kill -9`) under steady QoS 1 traffic: after a restart every message the broker
//! accepted is stored exactly once.

use std::collections::BTreeSet;

use sea_orm::{Database, EntityTrait};

use crate::helpers::{standalone_broker, wait_for, GatewayProcess, Publisher, Resources};

#[actix_web::test]
async fn kill_9_under_qos1_traffic_then_restart_stores_every_message_exactly_once() {
    let mut resources = Resources::fresh().await;
    resources.mqtt_url = Some(standalone_broker(&resources));
    let mut gateway = GatewayProcess::start(&resources).await;
    let db = Database::connect(&resources.database_url).await.unwrap();
    let count = || async {
        entity::raw_log::Entity::find()
            .all(&db)
            .await
            .map(|r| r.len())
            .unwrap_or(0)
    };

    // Within Mosquitto's default max_queued_messages (1000): past it the broker itself drops
    // QoS 1 messages for a session that is away, after acknowledging them to the publisher.
    let total = 900usize;
    let topic = format!("{}/1/raw_log", resources.prefix);
    let mut publisher = Publisher::connect(resources.mqtt_url.as_deref().unwrap()).await;
    let publishing = tokio::spawn(async move {
        for i in 0..total {
            publisher
                .send(&topic, format!("msg-{i:05}").into_bytes())
                .await;
            if i % 50 == 49 {
                publisher.wait_acks(50).await;
            }
        }
    });

    wait_for("traffic to be flowing", || async { count().await >= 200 }).await;
    gateway.kill_9();
    let stored_at_crash = count().await;
    let gateway = GatewayProcess::start(&resources).await;
    publishing
        .await
        .expect("every publish was accepted by the broker");
    wait_for("every accepted message to be stored", || async {
        count().await >= total
    })
    .await;

    let rows = entity::raw_log::Entity::find().all(&db).await.unwrap();
    let distinct: BTreeSet<&str> = rows.iter().map(|r| r.data.as_str()).collect();
    assert_eq!(
        distinct.len(),
        total,
        "none lost ({stored_at_crash} stored at the crash)"
    );
    assert_eq!(rows.len(), total, "none stored twice");

    let status = gateway.terminate().await;
    assert!(status.success(), "SIGTERM is a clean exit: {status:?}");
}
