//! The API's documents: OpenAPI valid and matching the routes (and a snapshot), the docs page
//! self-contained, and the AsyncAPI document checked against frames a real server sends.
//!
//! Regenerate the snapshot with `UPDATE_SNAPSHOTS=1 cargo test --test api openapi`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

/// Routes that are deliberately not operations in the document: the docs UI's redirect.
const NOT_DOCUMENTED: &[&str] = &["/api/docs"];

/// Status, `Location` header (empty if none) and body; redirects are not followed.
async fn get_raw(app: &TestApp, path: &str) -> (u16, String, Vec<u8>) {
    let mut resp = awc::Client::builder()
        .disable_redirects()
        .finish()
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .expect("HTTP request");
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp
        .body()
        .limit(64 * 1024 * 1024)
        .await
        .expect("HTTP body");
    (status, location, body.to_vec())
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn assert_refs_resolve(doc: &Value) {
    let mut refs = Vec::new();
    collect_refs(doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let pointer = r.strip_prefix('#').expect("a local $ref");
        assert!(doc.pointer(pointer).is_some(), "unresolved $ref {r}");
    }
}

#[actix_web::test]
async fn the_openapi_document_is_valid_openapi_3_1_with_every_operation_described() {
    let mut app = spawn_app().await;
    let (status, doc) = app.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    // Its info and paths parse with utoipa's own model. (utoipa cannot read back the
    // "any value" schemas it writes, such as a frame's `data`, so the components are checked
    // by hand below.)
    let info: utoipa::openapi::Info =
        serde_json::from_value(doc["info"].clone()).expect("a valid info object");
    assert_eq!(info.title, "SEANO telemetry gateway");
    let _: utoipa::openapi::path::Paths =
        serde_json::from_value(doc["paths"].clone()).expect("valid path items");
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let kinds = ["type", "oneOf", "allOf", "anyOf", "$ref", "enum"];
        assert!(
            kinds.iter().any(|k| schema.get(k).is_some()),
            "schema {name} says what it is: {schema}"
        );
    }
    assert_refs_resolve(&doc);

    let mut operation_ids = BTreeSet::new();
    let operations = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            let post = item.get("post").map(|op| (path, op));
            std::iter::once((path, &item["get"])).chain(post)
        });
    for (path, op) in operations {
        assert!(op.is_object(), "{path} has a GET operation");
        assert!(
            op["summary"].is_string() || op["description"].is_string(),
            "{path} is described"
        );
        assert!(
            operation_ids.insert(op["operationId"].as_str().unwrap().to_owned()),
            "{path}: operationId is unique"
        );
        assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()));
        for (code, response) in op["responses"].as_object().unwrap() {
            assert!(
                response["description"].is_string(),
                "{path} {code} is described"
            );
        }
        // Every path parameter in the template is declared, with a schema.
        for param in path.split('/').filter(|s| s.starts_with('{')) {
            let name = param.trim_matches(|c| c == '{' || c == '}');
            assert!(
                op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == name
                        && p["in"] == "path"
                        && p["required"] == true
                        && p["schema"].is_object()),
                "{path} declares {name}"
            );
        }
    }
    // Every frame type has a schema, both directions.
    for schema in [
        "ConnectionFrame",
        "RawLogFrame",
        "SensorLogFrame",
        "VehicleLogFrame",
        "PongFrame",
        "SubscriptionAckFrame",
        "ErrorFrame",
        "ResyncFrame",
        "PingFrame",
        "SubscribeFrame",
        "UnsubscribeFrame",
    ] {
        assert!(
            doc["components"]["schemas"][schema]["properties"]["type"]["enum"].is_array(),
            "{schema}"
        );
    }
    app.stop().await;
}

#[actix_web::test]
async fn the_openapi_document_matches_its_snapshot() {
    let mut app = spawn_app().await;
    let (status, _, body) = get_raw(&app, "/api/openapi.json").await;
    assert_eq!(status, 200);
    let served = String::from_utf8(body).unwrap();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/openapi.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{served}\n")).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .expect("tests/snapshots/openapi.json exists (UPDATE_SNAPSHOTS=1 writes it)");
    let (expected, served): (Value, Value) = (
        serde_json::from_str(&expected).unwrap(),
        serde_json::from_str(&served).unwrap(),
    );
    assert!(
        expected == served,
        "the OpenAPI document changed; review the diff and run UPDATE_SNAPSHOTS=1 cargo test --test api openapi"
    );
    app.stop().await;
}

/// Every route the application registers (the table `routes()` is built from).
fn registered_routes() -> Vec<String> {
    seano_gateway::http::route_table()
        .into_iter()
        .map(|r| r.path.to_owned())
        .collect()
}

#[actix_web::test]
async fn every_registered_route_is_in_the_document_and_every_documented_path_is_served() {
    let mut app = spawn_app().await;
    // Vehicle 1 exists, so its paths answer 200 rather than a (JSON) 404.
    app.publish("1/vehicle_log", r#"{"latitude":-6.2,"longitude":106.8}"#)
        .await;
    app.wait_rows("vehicle_logs", 1).await;
    // A command exists, so /api/commands/{request_id} answers 200.
    let mut resp = app
        .http
        .post(format!("{}/api/vehicles/1/commands", app.address))
        .send_json(&json!({"command": "HOLD"}))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let command = resp.json::<Value>().await.unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, doc) = app.get("/api/openapi.json").await;
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let routes = registered_routes();
    assert!(routes.len() >= 12, "found the routes: {routes:?}");
    for route in &routes {
        if NOT_DOCUMENTED.contains(&route.as_str()) {
            continue;
        }
        assert!(
            documented.contains(route),
            "{route} is registered but not documented"
        );
    }
    for path in &documented {
        assert!(
            routes.contains(path),
            "{path} is documented but not registered"
        );
        let concrete = path
            .replace("{vehicle_id}", "1")
            .replace("{type}", "raw_log")
            .replace("{request_id}", &command);
        let (status, _, _) = get_raw(&app, &concrete).await;
        assert_ne!(status, 404, "{concrete} is served");
        assert_ne!(status, 405, "{concrete} answers GET");
    }
    app.stop().await;
}

/// The next frame of type `kind`, skipping others.
async fn next_of(ws: &mut crate::helpers::WsClient, kind: &str) -> Value {
    loop {
        let v = ws.next_json().await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// `src="..."` and `href="..."` values in an HTML page.
fn html_references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attr) {
            rest = &rest[at + attr.len()..];
            let end = rest.find('"').unwrap();
            out.push(rest[..end].to_owned());
        }
    }
    out
}

/// `url(...)` values in a stylesheet.
fn css_urls(css: &str) -> Vec<String> {
    css.split("url(")
        .skip(1)
        .map(|s| {
            s.split(')')
                .next()
                .unwrap()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_owned()
        })
        .collect()
}

fn is_external(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    (lower.starts_with("http:") || lower.starts_with("https:") || lower.starts_with("//"))
        && !lower.contains("://127.0.0.1")
        && !lower.contains("://localhost")
}

#[actix_web::test]
async fn the_docs_page_loads_nothing_from_another_host() {
    let mut app = spawn_app().await;
    let (status, location, _) = get_raw(&app, "/api/docs").await;
    assert_eq!(status, 308);
    assert_eq!(location, "/api/docs/");

    let (status, _, html) = get_raw(&app, "/api/docs/").await;
    assert_eq!(status, 200);
    let html = String::from_utf8(html).unwrap();
    let references = html_references(&html);
    assert!(
        references.iter().any(|r| r.ends_with(".js")),
        "{references:?}"
    );
    for reference in &references {
        assert!(
            !is_external(reference),
            "the docs page references {reference}"
        );
        let path = format!("/api/docs/{}", reference.trim_start_matches("./"));
        let (status, _, body) = get_raw(&app, &path).await;
        assert_eq!(status, 200, "{path} is served by the gateway");
        if path.ends_with(".css") {
            for url in css_urls(&String::from_utf8_lossy(&body)) {
                assert!(!is_external(&url), "{path} loads {url}");
            }
        }
    }
    // The initializer points the UI at our document and turns off the online validator badge.
    let (_, _, init) = get_raw(&app, "/api/docs/swagger-initializer.js").await;
    let init = String::from_utf8(init).unwrap();
    assert!(init.contains("/api/openapi.json"), "{init}");
    assert!(init.contains("\"validatorUrl\": \"none\""), "{init}");
    assert!(
        !init.contains("http://") && !init.contains("https://"),
        "{init}"
    );
    app.stop().await;
}

/// Checks `value` against a JSON schema from `doc`: required keys present, no undocumented
/// key, JSON types and enums respected, `$ref`s followed. Returns what is wrong.
fn violations(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    if let Some(Value::String(r)) = schema.get("$ref") {
        let target = doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("unresolved {r}"));
        return violations(doc, target, value, at);
    }
    let mut out = Vec::new();
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let ok = allowed.contains(&actual) || (actual == "integer" && allowed.contains(&"number"));
        if !ok {
            out.push(format!("{at}: {actual} is not {allowed:?}"));
        }
    }
    if let Some(Value::Array(options)) = schema.get("enum") {
        if !options.contains(value) {
            out.push(format!("{at}: {value} not in {options:?}"));
        }
    }
    if let (Some(Value::Object(props)), Value::Object(obj)) = (schema.get("properties"), value) {
        if let Some(Value::Array(required)) = schema.get("required") {
            for key in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(key) {
                    out.push(format!("{at}: missing required {key}"));
                }
            }
        }
        for (key, v) in obj {
            match props.get(key) {
                Some(p) => out.extend(violations(doc, p, v, &format!("{at}.{key}"))),
                None if schema
                    .get("additionalProperties")
                    .is_some_and(|a| a != &Value::Bool(false)) => {}
                None => out.push(format!("{at}: undocumented key {key}")),
            }
        }
    }
    if let (Some(items), Value::Array(values)) = (schema.get("items"), value) {
        for (i, v) in values.iter().enumerate() {
            out.extend(violations(doc, items, v, &format!("{at}[{i}]")));
        }
    }
    out
}

/// Checks a frame against the AsyncAPI message named by its `type`, on `channel`.
fn check_frame(asyncapi: &Value, channel: &str, frame: &Value, direction: &str) {
    let kind = frame["type"].as_str().expect("a frame has a type");
    let channel_msg = &asyncapi["channels"][channel]["messages"][kind];
    assert!(
        channel_msg.is_object(),
        "{kind} is a message of channel {channel}"
    );
    let operation_lists_it = asyncapi["operations"]
        .as_object()
        .unwrap()
        .values()
        .filter(|op| {
            op["action"] == direction
                && op["channel"]["$ref"] == format!("#/channels/{channel}").as_str()
        })
        .any(|op| {
            op["messages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["$ref"] == format!("#/channels/{channel}/messages/{kind}").as_str())
        });
    assert!(
        operation_lists_it,
        "a {direction} operation on {channel} lists {kind}"
    );
    let message = &asyncapi["components"]["messages"][kind];
    let problems = violations(asyncapi, &message["payload"], frame, kind);
    assert!(
        problems.is_empty(),
        "{frame} does not match the AsyncAPI schema: {problems:?}"
    );
}

#[actix_web::test]
async fn the_asyncapi_document_describes_every_frame_the_server_really_sends() {
    let mut app = spawn_app().await;
    let (status, asyncapi) = app.get("/api/asyncapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(asyncapi["asyncapi"], "3.0.0");
    assert_eq!(asyncapi["channels"]["allVehicles"]["address"], "/api/ws");
    assert_eq!(
        asyncapi["channels"]["vehicle"]["address"],
        "/api/ws/vehicle/{vehicle_id}"
    );
    for param in ["types", "since", "snapshot", "conflate", "token"] {
        assert!(
            asyncapi["channels"]["allVehicles"]["bindings"]["ws"]["query"]["properties"][param]
                .is_object(),
            "query parameter {param} is documented"
        );
    }
    assert_refs_resolve(&asyncapi);

    let mut seen = BTreeSet::new();
    let mut check = |channel: &str, frame: &Value, direction: &str| {
        check_frame(&asyncapi, channel, frame, direction);
        seen.insert(frame["type"].as_str().unwrap().to_owned());
    };

    let mut all = app.connect_ws("/api/ws").await;
    check("allVehicles", &all.next_json().await, "send");
    let mut one = app.connect_ws("/api/ws/vehicle/1").await;
    check("vehicle", &one.next_json().await, "send");

    app.publish("1/raw_log", "GPS initialized successfully")
        .await;
    app.publish(
        "1/sensor_log",
        r#"{"sensor_id":5,"data":{"temperature":28.5}}"#,
    )
    .await;
    app.publish(
        "1/vehicle_log",
        r#"{"battery_voltage":12.4,"mode":"GUIDED","armed":true,"latitude":-6.2,"longitude":106.8,"note":"extra"}"#,
    )
    .await;
    for _ in 0..3 {
        check("allVehicles", &all.next_data().await, "send");
        check("vehicle", &one.next_data().await, "send");
    }

    let client_frames = [
        json!({"type": "ping", "timestamp": 1729269000123_i64}),
        json!({"type": "subscribe", "vehicle_id": 7}),
        json!({"type": "unsubscribe"}),
    ];
    for frame in client_frames {
        check("allVehicles", &frame, "receive");
        check("vehicle", &frame, "receive");
        all.send_json(frame.clone()).await;
        check("allVehicles", &all.next_json().await, "send");
        one.send_json(frame).await;
        check("vehicle", &one.next_json().await, "send");
    }
    all.send_text("{not json").await;
    check("allVehicles", &all.next_json().await, "send");

    // A command: its frame, the acceptance, and the state change every stream of vehicle 1
    // receives (`all` left "all vehicles" above, so a fresh one watches the fleet).
    let mut fleet = app.connect_ws("/api/ws").await;
    fleet.next_json().await;
    let command = json!({"type": "command", "vehicle_id": 1, "command": "RTL",
                         "request_id": "doc-1", "timeout_ms": 60000});
    check("allVehicles", &command, "receive");
    check("vehicle", &command, "receive");
    one.send_json(command).await;
    let accepted = next_of(&mut one, "command_accepted").await;
    check("vehicle", &accepted, "send");
    let status = next_of(&mut fleet, "command_status").await;
    assert_eq!(status["data"]["status"], "accepted");
    check("allVehicles", &status, "send");
    let status = next_of(&mut one, "command_status").await;
    check("vehicle", &status, "send");

    // Snapshot frames, and a resync for a since ahead of the last seq.
    let mut snap = app
        .connect_ws("/api/ws?snapshot=latest&types=vehicle_log")
        .await;
    snap.next_json().await;
    let frame = snap.next_data().await;
    assert_eq!(frame["snapshot"], true);
    check("allVehicles", &frame, "send");
    let mut resync = app.connect_ws("/api/ws/vehicle/1?since=999999").await;
    resync.next_json().await;
    let frame = resync.next_json().await;
    assert_eq!(frame["type"], "resync");
    check("vehicle", &frame, "send");
    // A conflated frame needs a client that stops reading (see the slow-client tests); check
    // the very function the session sends it with.
    let conflated = serde_json::from_str(&seano_gateway::ws::protocol::conflated(3)).unwrap();
    check("allVehicles", &conflated, "send");

    let expected: BTreeSet<String> = [
        "connection",
        "raw_log",
        "sensor_log",
        "vehicle_log",
        "command_status",
        "pong",
        "subscription_ack",
        "error",
        "command",
        "command_accepted",
        "resync",
        "conflated",
        "ping",
        "subscribe",
        "unsubscribe",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(seen, expected, "every frame type was checked");
    let documented: BTreeSet<String> = asyncapi["components"]["messages"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(documented, expected, "and nothing else is documented");
    app.stop().await;
}

/// The status of a WebSocket upgrade of `path` (101 when it is accepted).
async fn upgrade_status(app: &TestApp, path: &str) -> u16 {
    match awc::Client::default()
        .ws(format!("ws://127.0.0.1:{}{path}", app.port))
        .connect()
        .await
    {
        Ok(_) => 101,
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => s.as_u16(),
        Err(e) => panic!("unexpected handshake failure on {path}: {e}"),
    }
}

/// Schemathesis leaves the streams out of its run (it cannot upgrade), so their documented
/// refusals are checked here: the upgrade headers are documented as required and a plain GET is
/// refused, a misspelt or bad parameter is a 400 that names it, an unknown vehicle a 404, and
/// every status is one the operation documents.
#[actix_web::test]
async fn the_streams_refuse_what_their_document_refuses_with_a_documented_status() {
    let mut app = spawn_app().await;
    app.publish("1/raw_log", "hello").await;
    app.wait_rows("raw_logs", 1).await;
    let (_, doc) = app.get("/api/openapi.json").await;
    for (path, concrete) in [
        ("/api/ws", "/api/ws"),
        ("/api/ws/vehicle/{vehicle_id}", "/api/ws/vehicle/1"),
    ] {
        let op = &doc["paths"][path]["get"];
        let documented = |status: u16| op["responses"][status.to_string()].is_object();
        let required_headers: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "header" && p["required"] == true)
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for header in [
            "Upgrade",
            "Connection",
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Key",
        ] {
            assert!(
                required_headers.contains(&header),
                "{path} documents {header} as required: {required_headers:?}"
            );
        }
        let (status, body) = app.get(concrete).await;
        assert!(
            status == 400 && documented(400),
            "{concrete}: {status} {body}"
        );
        assert_eq!(body["parameter"], "upgrade", "{body}");
        for (query, parameter) in [
            ("sinse=5", "query"),
            ("since=-1", "since"),
            ("snapshot=", "snapshot"),
            ("conflate=oldest", "conflate"),
            ("types=vehicle_log,bogus", "types"),
        ] {
            let with_query = format!("{concrete}?{query}");
            let (status, body) = app.get(&with_query).await;
            assert_eq!(status, 400, "{with_query}: {body}");
            assert_eq!(body["parameter"], parameter, "{with_query}: {body}");
            assert_eq!(upgrade_status(&app, &with_query).await, 400, "{with_query}");
        }
        assert_eq!(upgrade_status(&app, concrete).await, 101, "{concrete}");
    }
    let unknown = "/api/ws/vehicle/NO-SUCH-BOAT";
    let status = upgrade_status(&app, unknown).await;
    assert_eq!(status, 404, "{unknown}");
    assert!(doc["paths"]["/api/ws/vehicle/{vehicle_id}"]["get"]["responses"]["404"].is_object());
    app.stop().await;
}

/// A method the document does not list for a path is a 405 that says which one is allowed.
#[actix_web::test]
async fn every_api_route_answers_another_method_with_405_and_allow_get() {
    let mut app = spawn_app().await;
    app.publish("1/raw_log", "hello").await;
    app.wait_rows("raw_logs", 1).await;
    let client = awc::Client::default();
    for route in seano_gateway::http::route_table() {
        let path = route.path.replace("{vehicle_id}", "1");
        let (methods, allow) = match route.post {
            Some(_) => (&[awc::http::Method::PUT][..], "GET, POST"),
            None => (&[awc::http::Method::POST][..], "GET"),
        };
        for method in methods
            .iter()
            .cloned()
            .chain([awc::http::Method::DELETE, awc::http::Method::TRACE])
        {
            let resp = client
                .request(method.clone(), format!("{}{path}", app.address))
                .send()
                .await
                .expect("HTTP request");
            assert_eq!(resp.status().as_u16(), 405, "{method} {path}");
            assert_eq!(
                resp.headers().get("allow").and_then(|v| v.to_str().ok()),
                Some(allow),
                "{method} {path}"
            );
        }
    }
    app.stop().await;
}

/// An empty parameter is a 400 that names it, not the parameter left out: the document
/// declares each one's type, and `''` is none of them.
#[actix_web::test]
async fn an_empty_history_parameter_is_refused_by_name() {
    let mut app = spawn_app().await;
    app.publish("1/raw_log", "hello").await;
    app.wait_rows("raw_logs", 1).await;
    for parameter in ["from", "to", "after_seq", "before_seq", "limit", "order"] {
        let path = format!("/api/vehicles/1/raw_log?{parameter}=");
        let (status, body) = app.get(&path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["parameter"], parameter, "{path}: {body}");
    }
    let (status, body) = app.get("/api/vehicles/1/track?to=").await;
    assert_eq!((status, &body["parameter"]), (400, &json!("to")), "{body}");
    app.stop().await;
}
