//! Retention and downsampled history against the real gateway: old rows go in small batches
//! while a publisher keeps publishing (nothing lost, nothing fresh taken), a resume from before
//! what is kept gets `resync`, REST says where history begins, and bucketed history (from the
//! per-minute rollups or the raw rows) gives exactly the figures the raw rows give.

use std::collections::BTreeMap;
use std::time::Duration;

use jetson_sim::{CancellationToken, SimConfig};
use seano_gateway::retention::Period;
use serde_json::Value;

use crate::helpers::{spawn_app, spawn_with, unique, wait_for, Resources, DEADLINE};

fn period(s: &str) -> Period {
    s.parse().unwrap()
}

/// `table`'s purged count in `/metrics`.
async fn purged_metric(app: &crate::helpers::TestApp, table: &str) -> u64 {
    app.metric("seano_rows_purged_total", &format!("table=\"{table}\""))
        .await
}

#[actix_web::test]
async fn old_rows_go_in_batches_while_ingest_goes_on_and_nothing_is_lost() {
    const OLD: usize = 120;
    let mut app = spawn_with(Resources::fresh().await, |s| {
        s.retention_vehicle_log = period("4s");
        s.retention_rejected = period("4s");
        s.retention_raw_log = Period::FOREVER;
        s.purge_interval = period("1s");
        s.purge_batch = 10;
    })
    .await;
    for n in 0..OLD {
        app.publish(
            "1/vehicle_log",
            format!(r#"{{"mode":"AUTO","speed":{n}}}"#).into_bytes(),
        )
        .await;
        app.publish("1/raw_log", format!("old-{n}").into_bytes())
            .await;
    }
    for n in 0..5 {
        app.publish("1/vehicle_log", format!("not json {n}").into_bytes())
            .await;
    }
    app.wait_rows("vehicle_logs", OLD as i64).await;
    app.wait_rows("rejected_messages", 5).await;
    let (_, page) = app.get("/api/vehicles/1/vehicle_log?limit=1").await;
    let last_old_seq = page["live_since"].as_i64().unwrap();
    assert_eq!(page["history_begins_at"], Value::Null, "nothing purged yet");

    // A live client, and a publisher that keeps going while the old rows age out and go.
    let mut live = app.connect_ws("/api/ws?types=vehicle_log").await;
    live.next_json().await;
    let mut publisher = app.publisher().await;
    let topic = format!("{}/1/vehicle_log", app.prefix);
    let mut published = OLD;
    let mut last_seen = last_old_seq;
    let purge_began = tokio::time::Instant::now();
    loop {
        publisher
            .publish(
                &topic,
                format!(r#"{{"mode":"HOLD","n":{published}}}"#).into_bytes(),
            )
            .await;
        published += 1;
        // Every message reaches the live client, in seq order, with no gap in its own numbering.
        let frame = live.next_data().await;
        let seq = frame["seq"].as_i64().unwrap();
        assert!(seq > last_seen, "seq {seq} after {last_seen}");
        last_seen = seq;
        assert_eq!(frame["data"]["n"], published - 1);
        if app.get("/api/ws/stats").await.1["messages"]["purged"]["vehicle_logs"]
            .as_u64()
            .unwrap()
            >= OLD as u64
        {
            break;
        }
        assert!(
            purge_began.elapsed() < DEADLINE * 2,
            "the old rows were not purged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Fresh messages are kept: these were committed just now, well inside 4 s.
    for n in 0..20 {
        publisher
            .publish(
                &topic,
                format!(r#"{{"mode":"RTL","fresh":{n}}}"#).into_bytes(),
            )
            .await;
    }
    wait_for("the fresh messages to be stored", || async {
        let (_, page) = app
            .get("/api/vehicles/1/vehicle_log?order=desc&limit=20")
            .await;
        page["items"]
            .as_array()
            .is_some_and(|items| items.iter().all(|i| i["data"]["mode"] == "RTL"))
    })
    .await;
    published += 20;

    // Accounting: every vehicle_log published is either stored or counted as purged.
    let purged = purged_metric(&app, "vehicle_logs").await;
    let stored = app.count("vehicle_logs").await as u64;
    assert_eq!(
        stored + purged,
        published as u64,
        "stored {stored} + purged {purged}"
    );
    assert!(purged >= OLD as u64);
    // The oldest rows went first, and the type kept forever kept everything.
    let (_, page) = app.get("/api/vehicles/1/vehicle_log?limit=1").await;
    assert!(page["items"][0]["seq"].as_i64().unwrap() > last_old_seq);
    assert_eq!(app.count("raw_logs").await, OLD as i64);
    assert_eq!(purged_metric(&app, "raw_logs").await, 0);
    // Rejected messages have a period of their own (purged in the same round, after vehicle_logs).
    wait_for("the old rejected messages to go", || async {
        app.count("rejected_messages").await == 0
    })
    .await;
    assert_eq!(purged_metric(&app, "rejected_messages").await, 5);

    // REST says where history now begins; raw_log history is whole.
    let begins = page["history_begins_at"]
        .as_str()
        .expect("history_begins_at");
    assert!(begins.ends_with('Z'), "{begins}");
    let (_, raw) = app.get("/api/vehicles/1/raw_log?limit=1").await;
    assert_eq!(raw["history_begins_at"], Value::Null);
    let (_, stats) = app.get("/api/ws/stats").await;
    assert!(stats["database"]["history_begins_at"]["vehicle_logs"].is_string());

    // A resume from before what is kept gets resync, then live data; raw_log alone replays.
    let mut ws = app
        .connect_ws(&format!(
            "/api/ws?since={}&types=vehicle_log",
            last_old_seq - 10
        ))
        .await;
    ws.next_json().await;
    let resync = ws.next_json().await;
    assert_eq!(resync["type"], "resync", "{resync}");
    assert!(resync["purged_through_seq"].as_i64().unwrap() >= last_old_seq - 1);
    let mut raw_ws = app
        .connect_ws(&format!(
            "/api/ws?since={}&types=raw_log",
            last_old_seq - 10
        ))
        .await;
    raw_ws.next_json().await;
    let replayed = raw_ws.next_json().await;
    assert_eq!(replayed["type"], "raw_log", "{replayed}");

    publisher
        .publish(&topic, br#"{"mode":"AUTO","after":1}"#.to_vec())
        .await;
    assert_eq!(ws.next_data().await["data"]["after"], 1);
    app.stop().await;
}

/// Min, max, sum, n, and the (timestamp, seq, value) of the last.
type FieldExpected = (f64, f64, f64, i64, (String, i64, f64));

/// What a bucket holds, computed here from raw history items.
#[derive(Debug, Default)]
struct Expected {
    count: i64,
    fields: BTreeMap<String, FieldExpected>,
}

/// Every item of a vehicle's history of `kind` over REST, oldest first.
async fn all_items(app: &crate::helpers::TestApp, vehicle: i64, kind: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = app
            .get(&format!(
                "/api/vehicles/{vehicle}/{kind}?limit=1000&after_seq={after}"
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        let got = page["items"].as_array().unwrap().clone();
        items.extend(got);
        if !page["has_more"].as_bool().unwrap() {
            return items;
        }
        after = page["next_after_seq"].as_i64().unwrap();
    }
}

fn epoch_ms(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts)
        .unwrap()
        .timestamp_millis()
}

/// Groups raw items by bucket (and sensor) the way the gateway documents it.
fn expected(items: &[Value], bucket_secs: i64) -> BTreeMap<(i64, String), Expected> {
    let mut out: BTreeMap<(i64, String), Expected> = BTreeMap::new();
    for item in items {
        let ts = item["timestamp"].as_str().unwrap();
        let ms = epoch_ms(ts);
        let start = ms.div_euclid(bucket_secs * 1000) * bucket_secs * 1000;
        let sensor = item
            .get("sensor_code")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| item.get("sensor_id").map(|v| v.to_string()))
            .unwrap_or_default();
        let seq = item["seq"].as_i64().unwrap();
        let e = out.entry((start, sensor)).or_default();
        e.count += 1;
        let mut leaves = Vec::new();
        numbers("", &item["data"], &mut leaves, 1);
        for (name, v) in leaves {
            let f = e
                .fields
                .entry(name)
                .or_insert((v, v, 0.0, 0, (String::new(), i64::MIN, v)));
            f.0 = f.0.min(v);
            f.1 = f.1.max(v);
            f.2 += v;
            f.3 += 1;
            if (ms, seq) > (epoch_ms_or_min(&f.4 .0), f.4 .1) {
                f.4 = (ts.to_owned(), seq, v);
            }
        }
    }
    out
}

fn epoch_ms_or_min(ts: &str) -> i64 {
    if ts.is_empty() {
        i64::MIN
    } else {
        epoch_ms(ts)
    }
}

fn numbers(prefix: &str, v: &Value, out: &mut Vec<(String, f64)>, depth: usize) {
    let Value::Object(map) = v else { return };
    for (k, v) in map {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Number(n) => out.push((name, n.as_f64().unwrap())),
            Value::Object(_) if depth < 3 => numbers(&name, v, out, depth + 1),
            _ => {}
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Checks a bucketed answer against the raw items, bucket by bucket and field by field.
fn check_buckets(answer: &Value, items: &[Value], bucket_secs: i64, what: &str) {
    let want = expected(items, bucket_secs);
    let got = answer["items"].as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: buckets");
    assert_eq!(answer["has_more"], false, "{what}");
    for (item, ((start, sensor), e)) in got.iter().zip(&want) {
        assert_eq!(epoch_ms(item["start"].as_str().unwrap()), *start, "{what}");
        let got_sensor = item
            .get("sensor_code")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| item.get("sensor_id").map(|v| v.to_string()))
            .unwrap_or_default();
        assert_eq!(&got_sensor, sensor, "{what}");
        assert_eq!(
            item["count"].as_i64().unwrap(),
            e.count,
            "{what} count at {start}"
        );
        let fields = item["fields"].as_object().unwrap();
        assert_eq!(
            fields.keys().collect::<Vec<_>>(),
            e.fields.keys().collect::<Vec<_>>(),
            "{what}"
        );
        for (name, (min, max, sum, n, (_, _, last))) in &e.fields {
            let f = &fields[name];
            assert_eq!(f["min"].as_f64().unwrap(), *min, "{what} {name} min");
            assert_eq!(f["max"].as_f64().unwrap(), *max, "{what} {name} max");
            assert!(
                close(f["mean"].as_f64().unwrap(), sum / *n as f64),
                "{what} {name} mean {} vs {}",
                f["mean"],
                sum / *n as f64
            );
            assert_eq!(f["last"].as_f64().unwrap(), *last, "{what} {name} last");
        }
    }
}

#[actix_web::test]
async fn bucketed_history_gives_what_the_raw_rows_give() {
    let mut app = spawn_app().await;
    let config = SimConfig {
        broker: app.mqtt_url.clone(),
        client_id: unique("sim"),
        prefix: app.prefix.clone(),
        vehicles: 2,
        rate: 50.0,
        sensor_rate: 10.0,
        seed: Some(11),
        count: Some(1200),
        qos: 1,
        ..SimConfig::default()
    };
    let summary = jetson_sim::run(config, CancellationToken::new())
        .await
        .expect("the simulator runs");
    assert_eq!(summary.failures, 0, "{summary}");
    app.wait_rows("vehicle_logs", summary.by_type.vehicle_log as i64)
        .await;
    app.wait_rows("sensor_logs", summary.by_type.sensor_log as i64)
        .await;
    app.wait_rows("raw_logs", summary.by_type.raw_log as i64)
        .await;

    for &vehicle in summary.per_vehicle.keys() {
        for kind in ["vehicle_log", "sensor_log", "raw_log"] {
            let items = all_items(&app, vehicle, kind).await;
            assert!(!items.is_empty(), "vehicle {vehicle} sent {kind}");
            // Whole minutes come from the rollups, the rest from raw rows.
            for (bucket, secs, source) in [
                ("1m", 60, "rollup"),
                ("1h", 3600, "rollup"),
                ("10s", 10, "raw"),
                ("7s", 7, "raw"),
                ("90s", 90, "raw"),
            ] {
                let (status, answer) = app
                    .get(&format!("/api/vehicles/{vehicle}/{kind}?bucket={bucket}"))
                    .await;
                assert_eq!(status, 200, "{answer}");
                assert_eq!(answer["source"], source, "{bucket}");
                assert_eq!(answer["bucket_seconds"], secs);
                check_buckets(
                    &answer,
                    &items,
                    secs,
                    &format!("vehicle {vehicle} {kind} bucket={bucket}"),
                );
            }
        }
        // The bucketed track: the last position of each minute.
        let items = all_items(&app, vehicle, "vehicle_log").await;
        let (_, track) = app
            .get(&format!("/api/vehicles/{vehicle}/track?bucket=1m"))
            .await;
        let want = expected(&items, 60);
        let points = track["points"].as_array().unwrap();
        assert_eq!(points.len(), want.len());
        for (p, e) in points.iter().zip(want.values()) {
            assert_eq!(p["latitude"].as_f64().unwrap(), e.fields["latitude"].4 .2);
            assert_eq!(p["longitude"].as_f64().unwrap(), e.fields["longitude"].4 .2);
        }
    }

    // Paging buckets: limit=1 then from=next_from walks the same buckets.
    let vehicle = *summary.per_vehicle.keys().next().unwrap();
    let (_, whole) = app
        .get(&format!("/api/vehicles/{vehicle}/vehicle_log?bucket=10s"))
        .await;
    let (_, first) = app
        .get(&format!(
            "/api/vehicles/{vehicle}/vehicle_log?bucket=10s&limit=1"
        ))
        .await;
    assert_eq!(first["items"][0], whole["items"][0]);
    if whole["items"].as_array().unwrap().len() > 1 {
        assert_eq!(first["has_more"], true);
        let next = first["next_from"].as_str().unwrap();
        let (_, second) = app
            .get(&format!(
                "/api/vehicles/{vehicle}/vehicle_log?bucket=10s&limit=1&from={next}"
            ))
            .await;
        assert_eq!(second["items"][0], whole["items"][1]);
    }
    app.stop().await;
}

#[actix_web::test]
async fn bad_bucket_parameters_are_refused_by_name() {
    let mut app = spawn_app().await;
    app.publish("1/vehicle_log", br#"{"speed":1}"#.to_vec())
        .await;
    app.wait_rows("vehicle_logs", 1).await;
    for (query, parameter) in [
        ("bucket=0", "bucket"),
        ("bucket=1.5m", "bucket"),
        ("bucket=10y", "bucket"),
        ("bucket=1000d", "bucket"),
        ("bucket=01m", "bucket"),
        ("bucket=%C2%BC", "bucket"),
        ("bucket=", "bucket"),
        ("bucket=1m&after_seq=3", "after_seq"),
        ("bucket=1m&order=desc", "order"),
        ("bucket=1m&limit=10001", "limit"),
    ] {
        let (status, body) = app
            .get(&format!("/api/vehicles/1/vehicle_log?{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
    }
    let (status, body) = app.get("/api/vehicles/1/track?bucket=nope").await;
    assert_eq!((status, &body["parameter"]), (400, &Value::from("bucket")));
    app.stop().await;
}

#[actix_web::test]
async fn what_a_crash_left_out_of_the_rollups_is_rolled_up_at_the_restart() {
    let resources = Resources::fresh().await;
    let mut app = spawn_with(resources.clone(), |_| {}).await;
    for n in 0..30 {
        app.publish(
            "1/vehicle_log",
            format!(r#"{{"speed":{n},"latitude":-6.2,"longitude":106.8}}"#).into_bytes(),
        )
        .await;
    }
    app.wait_rows("vehicle_logs", 30).await;
    app.stop().await;
    // As if the run had died with its figures still in memory: nothing rolled up.
    let sql = |s: &str| {
        sea_orm::Statement::from_string(
            sea_orm::ConnectionTrait::get_database_backend(&app.db),
            s.to_owned(),
        )
    };
    use sea_orm::{ActiveModelTrait, ConnectionTrait};
    app.db
        .execute_raw(sql("DELETE FROM rollups"))
        .await
        .unwrap();
    app.db
        .execute_raw(sql("UPDATE rollup_cursor SET through_seq = 0"))
        .await
        .unwrap();

    let mut app = spawn_with(resources, |_| {}).await;
    let (_, answer) = app.get("/api/vehicles/1/vehicle_log?bucket=1h").await;
    let counted: i64 = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["count"].as_i64().unwrap())
        .sum();
    assert_eq!(counted, 30, "{answer}");
    let items = all_items(&app, 1, "vehicle_log").await;
    check_buckets(&answer, &items, 3600, "after recovery");
    app.stop().await;

    // A bulk load: a million seqs no gateway run stored, a few rows among them. The start does
    // not wait to read them; they are left out of the rollups.
    let base: i64 = app
        .db
        .query_one_raw(sql("SELECT value FROM seq_cursor"))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    let now = chrono::Utc::now();
    for k in 1..=5i64 {
        let state = seano_wire::VehicleState {
            speed: Some(100.0),
            ..Default::default()
        };
        entity::vehicle_log::ActiveModel::from_state(base + k * 1000, 1, &state, now, now, -k)
            .insert(&app.db)
            .await
            .unwrap();
    }
    app.db
        .execute_raw(sql("UPDATE seq_cursor SET value = value + 1000000"))
        .await
        .unwrap();
    let resources = app.resources.clone();
    let mut app = spawn_with(resources, |_| {}).await;
    let (_, answer) = app.get("/api/vehicles/1/vehicle_log?bucket=1h").await;
    let counted: i64 = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["count"].as_i64().unwrap())
        .sum();
    assert_eq!(
        counted, 30,
        "the bulk-loaded rows are not rolled up: {answer}"
    );
    assert_eq!(app.count("vehicle_logs").await, 35);
    let one = |q: &'static str| {
        let db = app.db.clone();
        async move {
            db.query_one_raw(sql(q))
                .await
                .unwrap()
                .unwrap()
                .try_get_by_index::<i64>(0)
                .unwrap()
        }
    };
    assert_eq!(
        one("SELECT through_seq FROM rollup_cursor").await,
        one("SELECT value FROM seq_cursor").await
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_bucketed_query_does_not_wait_on_a_writer_held_up_by_the_database() {
    let mut app = spawn_app().await;
    app.publish("1/vehicle_log", br#"{"speed":1}"#.to_vec())
        .await;
    app.wait_rows("vehicle_logs", 1).await;
    // Another writer holds the seq cursor: the store's next commit waits on it.
    let blocker = crate::helpers::hold_seq_cursor(&app.db).await;
    app.publish("1/vehicle_log", br#"{"speed":2}"#.to_vec())
        .await;
    wait_for("the second message to wait in the writer", || async {
        app.get("/ready").await.1["ingest_in_flight"] == 1
    })
    .await;
    // Answered (within the HTTP client's timeout) from what is committed.
    let (status, answer) = app.get("/api/vehicles/1/vehicle_log?bucket=1h").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["items"][0]["count"], 1, "{answer}");

    blocker.rollback().await.unwrap();
    app.wait_rows("vehicle_logs", 2).await;
    let (_, answer) = app.get("/api/vehicles/1/vehicle_log?bucket=1h").await;
    assert_eq!(answer["items"][0]["count"], 2, "{answer}");
    app.stop().await;
}
