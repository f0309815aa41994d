//! Commands to vehicles, end to end: a socket or REST → the gateway → the real broker → a
//! scripted boat (a real MQTT client answering on the ack topic) → the store → every stream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::helpers::{spawn_with, unique, wait_for, Resources, TcpProxy, TestApp, WsClient};

/// What the scripted boat does with the next commands.
#[derive(Clone, Debug)]
enum Answer {
    Ok(&'static str),
    Error(&'static str),
    Silent,
}

/// A boat: subscribes to `{prefix}/+/command` with a persistent session and answers each command
/// on its vehicle's ack topic as told; every command it receives is reported.
struct Boat {
    client: AsyncClient,
    answer: Arc<Mutex<Answer>>,
    received: mpsc::UnboundedReceiver<(String, Value)>,
}

impl Boat {
    async fn start(mqtt_url: &str, prefix: &str, answer: Answer) -> Boat {
        Boat::start_as(mqtt_url, prefix, answer, &unique("boat")).await
    }

    async fn start_as(mqtt_url: &str, prefix: &str, answer: Answer, client_id: &str) -> Boat {
        let broker = seano_gateway::mqtt::BrokerAddress::parse(mqtt_url).unwrap();
        let mut opts = MqttOptions::new(client_id, broker.host, broker.port);
        opts.set_clean_session(false);
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        let answer = Arc::new(Mutex::new(answer));
        let (tx, received) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
        let filter = format!("{prefix}/+/command");
        let (c, a) = (client.clone(), answer.clone());
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        c.subscribe(&filter, QoS::AtLeastOnce).await.unwrap();
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let command: Value = serde_json::from_slice(&p.payload).unwrap();
                        let ack_topic = p.topic.replace("/command", "/ack");
                        let reply = a.lock().unwrap().clone();
                        let (status, message) = match reply {
                            Answer::Ok(m) => ("ok", m),
                            Answer::Error(m) => ("error", m),
                            Answer::Silent => ("", ""),
                        };
                        if !status.is_empty() {
                            let ack = json!({
                                "request_id": command["request_id"], "command": command["command"],
                                "status": status, "message": message,
                                "timestamp": "2026-05-06T08:15:02.481Z",
                            });
                            c.publish(ack_topic, QoS::AtLeastOnce, false, ack.to_string())
                                .await
                                .unwrap();
                        }
                        if tx.send((p.topic.to_string(), command)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(15), subscribed.recv())
            .await
            .expect("the boat subscribes");
        Boat {
            client,
            answer,
            received,
        }
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// The next command the boat receives: its topic and payload.
    async fn next(&mut self) -> (String, Value) {
        tokio::time::timeout(Duration::from_secs(15), self.received.recv())
            .await
            .expect("the boat receives a command")
            .expect("the boat runs")
    }

    async fn stop(self) {
        let _ = self.client.disconnect().await;
    }
}

/// Registers vehicle `id` (a command goes only to a vehicle the gateway has seen).
async fn register(app: &mut TestApp, id: i64) {
    app.publish(&format!("{id}/vehicle_log"), r#"{"mode":"MANUAL"}"#)
        .await;
    wait_for("the vehicle to register", || async {
        use sea_orm::EntityTrait;
        entity::vehicle::Entity::find_by_id(id)
            .one(&app.db)
            .await
            .unwrap()
            .is_some()
    })
    .await;
}

/// POSTs a command; the status and body.
async fn post(app: &TestApp, vehicle: &str, body: Value, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = app
        .http
        .post(format!("{}/api/vehicles/{vehicle}/commands", app.address));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut resp = req.send_json(&body).await.expect("HTTP request");
    let status = resp.status().as_u16();
    let body = resp.body().await.expect("HTTP body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The next frame that is not the `connection` greeting.
async fn next_reply(ws: &mut WsClient) -> Value {
    loop {
        let v = ws.next_json().await;
        if v["type"] != "connection" {
            return v;
        }
    }
}

/// The `command_status` frames of one command until it is final; the states in order.
async fn states_until_final(ws: &mut WsClient, request_id: &str) -> (Vec<String>, Value) {
    let mut states = Vec::new();
    loop {
        let v = ws.next_json().await;
        if v["type"] != "command_status" || v["data"]["request_id"] != request_id {
            continue;
        }
        let state = v["data"]["status"].as_str().unwrap().to_owned();
        assert!(v["seq"].as_i64().is_some(), "{v}");
        states.push(state.clone());
        if !matches!(state.as_str(), "accepted" | "sent") {
            return (states, v);
        }
    }
}

fn assert_lifecycle(states: &[String], last: &str) {
    assert_eq!(
        states.first().map(String::as_str),
        Some("accepted"),
        "{states:?}"
    );
    assert_eq!(states.last().map(String::as_str), Some(last), "{states:?}");
    // `sent` may be skipped when the boat's answer beats the broker's PUBACK to the gateway.
    assert!(states.len() <= 3, "{states:?}");
}

#[actix_rt::test]
async fn a_command_on_the_socket_reaches_the_boat_and_its_answer_every_stream() {
    let mut app = spawn_with(Resources::fresh().await, |_| {}).await;
    register(&mut app, 3).await;
    let mut boat = Boat::start(
        &app.mqtt_url,
        &app.prefix,
        Answer::Ok("Returning to launch"),
    )
    .await;
    let mut sender = app.connect_ws("/api/ws").await;
    let mut watcher = app
        .connect_ws("/api/ws/vehicle/3?types=command_status")
        .await;
    let mut other = app.connect_ws("/api/ws/vehicle/4").await;

    sender
        .send_json(json!({"type": "command", "vehicle_id": 3, "command": "RTL",
                          "params": {"speed": 2}, "request_id": "dash-1"}))
        .await;
    let accepted = loop {
        let v = sender.next_json().await;
        if v["type"] == "command_accepted" {
            break v;
        }
    };
    assert_eq!(accepted["repeat"], false);
    assert_eq!(accepted["command"]["status"], "accepted");
    assert_eq!(accepted["command"]["sent_by"], "local");

    // SEANO's shape on SEANO's topic, plus the optional fields.
    let (topic, payload) = boat.next().await;
    assert_eq!(topic, format!("{}/3/command", app.prefix));
    assert_eq!(payload["request_id"], "dash-1");
    assert_eq!(payload["command"], "RTL");
    assert_eq!(payload["params"], json!({"speed": 2}));
    assert!(payload["expires_at"].as_str().unwrap().ends_with('Z'));

    for ws in [&mut sender, &mut watcher] {
        let (states, last) = states_until_final(ws, "dash-1").await;
        assert_lifecycle(&states, "succeeded");
        assert_eq!(last["vehicle_id"], 3);
        assert_eq!(last["data"]["message"], "Returning to launch");
        assert_eq!(last["data"]["ack_status"], "ok");
    }
    // Another vehicle's stream sees none of it.
    assert!(other
        .round_trip()
        .await
        .iter()
        .all(|v| v["type"] != "command_status"));

    let (status, record) = app.get("/api/commands/dash-1").await;
    assert_eq!(status, 200);
    assert_eq!(record["status"], "succeeded");
    for stage in ["accepted_at", "sent_at", "acked_at", "resolved_at"] {
        assert!(record[stage].is_string(), "{stage} in {record}");
    }
    let (_, page) = app.get("/api/vehicles/3/commands").await;
    assert_eq!(page["items"][0]["request_id"], "dash-1");
    let (_, events) = app.get("/api/vehicles/3/command_status").await;
    assert_eq!(
        events["items"].as_array().unwrap().last().unwrap()["data"]["status"],
        "succeeded"
    );
    boat.stop().await;
}

#[actix_rt::test]
async fn failed_timed_out_and_late_answers_are_each_recorded() {
    let mut app = spawn_with(Resources::fresh().await, |_| {}).await;
    register(&mut app, 7).await;
    let mut boat = Boat::start(
        &app.mqtt_url,
        &app.prefix,
        Answer::Error("PreArm: battery below failsafe voltage"),
    )
    .await;
    let mut ws = app.connect_ws("/api/ws/vehicle/7").await;

    let (status, record) = post(
        &app,
        "7",
        json!({"command": "ARM", "request_id": "f-1"}),
        &[],
    )
    .await;
    assert_eq!(status, 202, "{record}");
    let (states, last) = states_until_final(&mut ws, "f-1").await;
    assert_lifecycle(&states, "failed");
    assert_eq!(
        last["data"]["message"],
        "PreArm: battery below failsafe voltage"
    );
    boat.next().await;

    // No answer within its timeout: timed out, from the gateway's own clock.
    boat.answer(Answer::Silent);
    let (status, _) = post(
        &app,
        "7",
        json!({"command": "HOLD", "request_id": "t-1", "timeout_ms": 300}),
        &[],
    )
    .await;
    assert_eq!(status, 202);
    let (_, payload) = boat.next().await;
    let (states, last) = states_until_final(&mut ws, "t-1").await;
    assert_lifecycle(&states, "timed_out");
    assert!(last["data"]["message"].as_str().unwrap().contains("300 ms"));

    // The answer comes after all: kept on the record, the state stays.
    let mut publisher = app.publisher().await;
    let late = json!({"request_id": payload["request_id"], "command": "HOLD", "status": "ok",
                      "message": "Holding"});
    publisher
        .publish(
            &format!("{}/7/ack", app.prefix),
            late.to_string().into_bytes(),
        )
        .await;
    wait_for("the late answer to be kept", || async {
        app.get("/api/commands/t-1").await.1["late_answer"] == true
    })
    .await;
    let (_, record) = app.get("/api/commands/t-1").await;
    assert_eq!(record["status"], "timed_out");
    assert_eq!(record["ack_status"], "ok");
    assert!(record["message"].as_str().unwrap().contains("Holding"));
    assert!(ws
        .round_trip()
        .await
        .iter()
        .all(|v| v["type"] != "command_status"));

    // An answer to no command is kept as a rejected message, not dropped.
    publisher
        .publish(
            &format!("{}/7/ack", app.prefix),
            br#"{"request_id":"nobody-sent-this","status":"ok"}"#.to_vec(),
        )
        .await;
    wait_for("the stray answer to be kept", || async {
        app.count("rejected_messages").await == 1
    })
    .await;
    let (_, stats) = app.get("/api/ws/stats").await;
    assert_eq!(
        stats["messages"]["rejected"]["unknown_request"], 1,
        "{stats}"
    );
    boat.stop().await;
}

#[actix_rt::test]
async fn bad_commands_are_refused_before_anything_is_sent_and_a_repeat_is_one_command() {
    let mut app = spawn_with(Resources::fresh().await, |s| s.command_burst = 3).await;
    register(&mut app, 5).await;
    let mut boat = Boat::start(&app.mqtt_url, &app.prefix, Answer::Ok("done")).await;
    let mut ws = app.connect_ws("/api/ws").await;

    for (frame, says) in [
        (
            json!({"type": "command", "vehicle_id": 5, "command": "SELF_DESTRUCT", "request_id": "u-1"}),
            "unknown command",
        ),
        (
            json!({"type": "command", "vehicle_id": 5, "command": "rtl", "request_id": "u-2"}),
            "not a command name",
        ),
        (
            json!({"type": "command", "vehicle_id": 5, "command": "RTL", "request_id": "u 3"}),
            "request_id",
        ),
        (
            json!({"type": "command", "vehicle_id": 5, "command": "RTL", "request_id": "u-4", "timeout_ms": 5}),
            "timeout_ms",
        ),
        (
            json!({"type": "command", "vehicle_id": 99, "command": "RTL", "request_id": "u-5"}),
            "never sent anything",
        ),
    ] {
        ws.send_json(frame.clone()).await;
        let v = next_reply(&mut ws).await;
        assert_eq!(v["type"], "error", "{frame} → {v}");
        assert!(v["message"].as_str().unwrap().contains(says), "{v}");
        assert_eq!(v["request_id"], frame["request_id"], "{v}");
    }
    let (status, body) = post(&app, "5", json!({"command": "DANCE"}), &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad_parameter"))
    );
    let (status, _) = post(&app, "5", json!({"command": "RTL", "extra": 1}), &[]).await;
    assert_eq!(status, 400);
    assert_eq!(app.get("/api/vehicles/5/commands?before_id=0").await.0, 400);
    assert_eq!(app.count("commands").await, 0);

    // The same request_id again: the same command, sent once.
    let (status, first) = post(
        &app,
        "5",
        json!({"command": "RTL", "request_id": "r-1"}),
        &[],
    )
    .await;
    assert_eq!(status, 202);
    let (status, again) = post(
        &app,
        "5",
        json!({"command": "RTL", "request_id": "r-1"}),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(again["accepted_at"], first["accepted_at"]);
    ws.send_json(
        json!({"type": "command", "vehicle_id": 5, "command": "RTL", "request_id": "r-1"}),
    )
    .await;
    let v = loop {
        let v = ws.next_json().await;
        if v["type"] == "command_accepted" {
            break v;
        }
    };
    assert_eq!(v["repeat"], true);
    let (status, _) = post(
        &app,
        "5",
        json!({"command": "HOLD", "request_id": "r-1"}),
        &[],
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(app.count("commands").await, 1);
    boat.next().await;

    // The per-vehicle rate limit (burst 3, one used above).
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(post(&app, "5", json!({"command": "LOITER"}), &[]).await.0);
    }
    assert_eq!(codes, [202, 202, 429]);
    // The boat got r-1 and the two accepted LOITERs, nothing twice.
    let ids: Vec<String> = [boat.next().await, boat.next().await]
        .iter()
        .map(|(_, p)| p["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!ids.contains(&"r-1".to_owned()), "{ids:?}");
    boat.stop().await;
}

#[actix_rt::test]
async fn only_credentials_with_command_rights_from_allowed_pages_may_command() {
    let resources = Resources::fresh().await;
    let mut app = spawn_with(resources, |s| {
        s.auth_tokens =
            Some("reader-token-1,pilot-token-1:*:commands,pilot5-token:5:commands".into());
        s.allowed_origins = Some("*".into());
    })
    .await;
    register(&mut app, 5).await;
    register(&mut app, 6).await;
    let bearer = |t: &str| format!("Bearer {t}");

    let read_only = bearer("reader-token-1");
    let (status, body) = post(
        &app,
        "5",
        json!({"command": "RTL"}),
        &[("Authorization", &read_only)],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("command rights"));
    let pilot5 = bearer("pilot5-token");
    let (status, _) = post(
        &app,
        "6",
        json!({"command": "RTL"}),
        &[("Authorization", &pilot5)],
    )
    .await;
    assert_eq!(status, 403, "another vehicle's pilot");
    let (status, _) = post(&app, "5", json!({"command": "RTL"}), &[]).await;
    assert_eq!(status, 401);
    // ALLOWED_ORIGINS=* lets any page read, never command.
    let pilot = bearer("pilot-token-1");
    let (status, body) = post(
        &app,
        "5",
        json!({"command": "RTL"}),
        &[
            ("Authorization", &pilot),
            ("Origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(app.count("commands").await, 0);

    let (status, me) = {
        let mut resp = app
            .http
            .get(format!("{}/api/me", app.address))
            .insert_header(("Authorization", read_only.as_str()))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 200);
    assert_eq!(me["commands"]["allowed"], false);
    assert!(me["commands"]["reason"]
        .as_str()
        .unwrap()
        .contains("command rights"));

    // On a socket: the read-only token gets an error frame, the pilot an acceptance.
    let url = |t: &str| format!("/api/ws?token={t}");
    let mut reader = app.connect_ws(&url("reader-token-1")).await;
    reader
        .send_json(
            json!({"type": "command", "vehicle_id": 5, "command": "RTL", "request_id": "x-1"}),
        )
        .await;
    let v = next_reply(&mut reader).await;
    assert_eq!(
        (v["type"].as_str(), v["request_id"].as_str()),
        (Some("error"), Some("x-1"))
    );
    let (status, record) = post(
        &app,
        "5",
        json!({"command": "RTL"}),
        &[("Authorization", &pilot)],
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(record["sent_by"], "token 2");
}

#[actix_rt::test]
async fn with_access_control_off_commands_need_a_loopback_address_or_the_explicit_setting() {
    let mut app = spawn_with(Resources::fresh().await, |s| {
        s.http_addr = "0.0.0.0:0".parse().unwrap();
    })
    .await;
    register(&mut app, 2).await;
    let (status, body) = post(&app, "2", json!({"command": "RTL"}), &[]).await;
    assert_eq!(status, 403);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("COMMANDS_WITHOUT_AUTH"),
        "{body}"
    );
    app.stop().await;

    let mut app = spawn_with(app.resources.clone(), |s| {
        s.http_addr = "0.0.0.0:0".parse().unwrap();
        s.commands_without_auth = true;
    })
    .await;
    register(&mut app, 2).await;
    let (status, _) = post(&app, "2", json!({"command": "RTL"}), &[]).await;
    assert_eq!(status, 202);
}

#[actix_rt::test]
async fn a_command_the_broker_never_took_expires_and_the_boat_is_told_its_deadline() {
    let mut resources = Resources::fresh().await;
    let broker = crate::helpers::standalone_broker(&resources);
    let proxy = TcpProxy::start(broker.trim_start_matches("mqtt://").to_owned()).await;
    resources.mqtt_url = Some(format!("mqtt://127.0.0.1:{}", proxy.port));
    let mut app = spawn_with(resources, |s| s.mqtt_keep_alive_secs = 5).await;
    register(&mut app, 4).await;
    let mut ws = app.connect_ws("/api/ws/vehicle/4").await;

    proxy.cut();
    wait_for("the gateway to see the broker gone", || async {
        app.get("/api/mqtt/status").await.1["connected"] == false
    })
    .await;
    let (status, _) = post(
        &app,
        "4",
        json!({"command": "RTL", "request_id": "e-1", "timeout_ms": 500}),
        &[],
    )
    .await;
    assert_eq!(status, 202);
    let (states, last) = states_until_final(&mut ws, "e-1").await;
    assert_eq!(states, ["accepted", "expired"]);
    assert!(last["data"]["sent_at"].is_null());

    // Back online, the boat gets it late, with a deadline in the past it must refuse.
    let mut boat = Boat::start(&broker, &app.prefix, Answer::Error("expired")).await;
    proxy.restore();
    let (_, payload) = boat.next().await;
    let expires =
        chrono::DateTime::parse_from_rfc3339(payload["expires_at"].as_str().unwrap()).unwrap();
    assert!(expires < chrono::Utc::now());
    wait_for("the refusal to be kept", || async {
        app.get("/api/commands/e-1").await.1["late_answer"] == true
    })
    .await;
    assert_eq!(app.get("/api/commands/e-1").await.1["status"], "expired");
    boat.stop().await;
}

#[actix_rt::test]
async fn pending_commands_survive_a_restart_and_their_frames_resume_with_since() {
    let resources = Resources::fresh().await;
    let mut app = spawn_with(resources.clone(), |_| {}).await;
    register(&mut app, 8).await;
    let boat_id = unique("boat");
    let mut boat = Boat::start_as(&app.mqtt_url, &app.prefix, Answer::Silent, &boat_id).await;
    let (_, before) = app.get("/api/ws/stats").await;
    let since = before["messages"]["last_seq"].as_i64().unwrap();

    post(
        &app,
        "8",
        json!({"command": "AUTO", "request_id": "p-1", "timeout_ms": 60000}),
        &[],
    )
    .await;
    post(
        &app,
        "8",
        json!({"command": "HOLD", "request_id": "p-2", "timeout_ms": 3000}),
        &[],
    )
    .await;
    boat.next().await;
    boat.next().await;
    wait_for("both commands to be sent", || async {
        app.get("/api/commands/p-2").await.1["status"] == "sent"
            && app.get("/api/commands/p-1").await.1["status"] == "sent"
    })
    .await;
    app.stop().await;

    // While the gateway is down the boat answers p-1; the broker keeps it for the gateway.
    let mut publisher = crate::helpers::Publisher::connect(&app.mqtt_url).await;
    let answer =
        json!({"request_id": "p-1", "command": "AUTO", "status": "ok", "message": "Mode AUTO"});
    publisher
        .publish(
            &format!("{}/8/ack", app.prefix),
            answer.to_string().into_bytes(),
        )
        .await;

    let app = spawn_with(app.resources.clone(), |_| {}).await;
    // The answer that came meanwhile resolves p-1; p-2's deadline is enforced from the table.
    let mut ws = app
        .connect_ws(&format!(
            "/api/ws/vehicle/8?since={since}&types=command_status"
        ))
        .await;
    let mut seen: Vec<(String, String, i64)> = Vec::new();
    while !(seen.iter().any(|s| s.0 == "p-1" && s.1 == "succeeded")
        && seen.iter().any(|s| s.0 == "p-2" && s.1 == "timed_out"))
    {
        let v = ws.next_json().await;
        if v["type"] == "command_status" {
            seen.push((
                v["data"]["request_id"].as_str().unwrap().to_owned(),
                v["data"]["status"].as_str().unwrap().to_owned(),
                v["seq"].as_i64().unwrap(),
            ));
        }
    }
    // Replayed from since= and then live, in seq order, each command's whole life.
    assert!(seen.windows(2).all(|w| w[0].2 < w[1].2), "{seen:?}");
    for (id, last) in [("p-1", "succeeded"), ("p-2", "timed_out")] {
        let states: Vec<&str> = seen
            .iter()
            .filter(|s| s.0 == id)
            .map(|s| s.1.as_str())
            .collect();
        assert_eq!(states, ["accepted", "sent", last], "{seen:?}");
    }
    boat.stop().await;
}

#[actix_rt::test]
async fn with_two_instances_the_answer_may_reach_either_and_every_client_sees_every_state() {
    let Some((resources, broker)) = crate::cluster::postgres_and_mosquitto().await else {
        return;
    };
    let a = crate::cluster::instance(&resources, "gw-a").await;
    let b = crate::cluster::instance(&resources, "gw-b").await;
    let mut publisher = crate::helpers::Publisher::connect(&broker.url).await;
    for vehicle in 1..=4 {
        publisher
            .publish(
                &format!("{}/{vehicle}/vehicle_log", resources.prefix),
                br#"{"mode":"MANUAL"}"#.to_vec(),
            )
            .await;
    }
    let http = awc::Client::default();
    let get = |port: u16, path: String| {
        let http = http.clone();
        async move {
            let mut resp = http
                .get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
                .unwrap();
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    wait_for("the vehicles to register", || async {
        get(a.port, "/api/vehicles".into()).await.1["vehicles"]
            .as_array()
            .map(Vec::len)
            == Some(4)
    })
    .await;
    let mut boat = Boat::start(&broker.url, &resources.prefix, Answer::Ok("done")).await;
    let mut watchers = Vec::new();
    for port in [a.port, b.port] {
        watchers.push(
            WsClient::connect(&format!(
                "ws://127.0.0.1:{port}/api/ws?types=command_status"
            ))
            .await,
        );
    }

    // Sent through either instance; the boat's answers reach whichever the broker picks.
    let ids: Vec<String> = (0..12).map(|n| format!("c-{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let port = if n % 2 == 0 { a.port } else { b.port };
        let mut resp = http
            .post(format!(
                "http://127.0.0.1:{port}/api/vehicles/{}/commands",
                n % 4 + 1
            ))
            .send_json(&json!({"command": "HOLD", "request_id": id}))
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202, "{:?}", resp.body().await);
    }
    for _ in &ids {
        boat.next().await;
    }
    for ws in &mut watchers {
        let mut done = std::collections::BTreeSet::new();
        while done.len() < ids.len() {
            let v = ws.next_json().await;
            if v["type"] == "command_status" && v["data"]["status"] == "succeeded" {
                done.insert(v["data"]["request_id"].as_str().unwrap().to_owned());
            }
        }
    }
    // Each answer was stored once, by one instance or the other.
    let mut answers = 0;
    for port in [a.port, b.port] {
        let (_, stats) = get(port, "/api/ws/stats".into()).await;
        let n = stats["messages"]["stored"]["command_status"]
            .as_u64()
            .unwrap();
        let received = stats["messages"]["received"]["command_status"]
            .as_u64()
            .unwrap();
        eprintln!("instance on {port}: {received} answers taken, {n} state changes stored");
        answers += received;
    }
    assert_eq!(answers, 12);
    boat.stop().await;
}
