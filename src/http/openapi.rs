//! The API's documentation: the OpenAPI document (`/api/openapi.json`), Swagger UI served from
//! the binary (`/api/docs`, nothing loaded from the internet), and an AsyncAPI 3.0 document for
//! the WebSocket protocol (`/api/asyncapi.json`).
//!
//! Nothing here restates the wire: the routes' schemas are derived from the types the handlers
//! return, the frames' from the types the gateway serializes (`seano_wire::frame`, whose
//! [`SERVER_FRAMES`] and [`CLIENT_FRAMES`] also list the AsyncAPI messages), and
//! `tests/api/openapi.rs` checks both documents against what a real server sends.

use std::sync::OnceLock;

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use seano_wire::frame::{self, FrameDoc, CLIENT_FRAMES, SERVER_FRAMES};
use serde_json::{json, Map, Value};
use utoipa::openapi::path::ParameterIn;
use utoipa::{IntoParams, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::{ApiDoc, AppState};
use crate::ws::protocol::StreamQuery;

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";
/// Where the AsyncAPI document is served.
pub const ASYNCAPI_PATH: &str = "/api/asyncapi.json";
/// Where Swagger UI is served (the trailing-slash form; the bare path redirects to it).
pub const DOCS_PATH: &str = "/api/docs";

/// What the streams' query parameters do, in prose (for both documents), from the type that
/// documents them as parameters.
fn stream_params_doc() -> String {
    let params: Vec<String> = StreamQuery::into_params(|| Some(ParameterIn::Query))
        .into_iter()
        .map(|p| {
            let what = p.description.unwrap_or_default().replace('\n', " ");
            format!("`{}=` ({})", p.name, what.trim_end_matches('.'))
        })
        .collect();
    format!("Query parameters: {}.", params.join(", "))
}

/// The frames both ways and the close codes, in prose (for both documents).
fn frames_doc() -> String {
    let ids = |frames: &[FrameDoc]| {
        frames
            .iter()
            .map(|f| format!("`{}`", f.id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "Frames are JSON text. Server → client: {} (data frames are `raw_log`, `sensor_log` and \
         `vehicle_log`, with `id` and `seq`). Client → server: {}. Every frame's schema is in \
         `components.schemas` (`*Frame`), and the full protocol is in the AsyncAPI document at \
         `{ASYNCAPI_PATH}`. Close codes: {} server shutting down (reconnect), {} client frame \
         too large, {} try again later, {} slow consumer (reconnect and resume with `since=`), \
         {} heartbeat timeout (reconnect); 3000-3499 mean reconnect, 3500-3999 do not reconnect \
         with the same request.",
        ids(SERVER_FRAMES),
        ids(CLIENT_FRAMES),
        frame::close::GOING_AWAY,
        frame::close::TOO_BIG,
        frame::close::TRY_AGAIN_LATER,
        frame::close::SLOW_CONSUMER,
        frame::close::HEARTBEAT_TIMEOUT,
    )
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "docs",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object, content_type = "application/json"))
)]
pub async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi_text(&state.commands.settings().names))
}

/// The AsyncAPI 3.0 document of the WebSocket protocol.
#[utoipa::path(
    get,
    path = "/api/asyncapi.json",
    tag = "docs",
    responses((status = 200, description = "The AsyncAPI 3.0 document: channels `/api/ws` and `/api/ws/vehicle/{vehicle_id}`, every frame both ways", body = Object, content_type = "application/json"))
)]
pub async fn asyncapi_json(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let host = req.connection_info().host().to_owned();
    HttpResponse::Ok().json(asyncapi(&host, &state.commands.settings().names))
}

/// `/api/docs` → `/api/docs/` (Swagger UI's assets are relative to the trailing slash).
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, format!("{DOCS_PATH}/")))
        .finish()
}

/// Swagger UI on `/api/docs/`, its assets compiled into the binary, reading `/api/openapi.json`.
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new(format!("{DOCS_PATH}/{{_:.*}}")).config(
        Config::new([OPENAPI_PATH])
            // The default validator badge loads an image from the internet.
            .validator_url("none")
            .try_it_out_enabled(true)
            .display_request_duration(true)
            .deep_linking(true),
    )
}

/// Access control (off by default): a bearer token, or `token=` where a header cannot be set.
/// Both are optional in the document, as they are for a gateway with authentication off.
pub(super) struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <token>`: a static token or a signed JWT, when authentication is on",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The same token as a query parameter (browsers cannot set headers on a WebSocket)",
            ))),
        );
        doc.security = Some(vec![
            SecurityRequirement::default(),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("token", Vec::<String>::new()),
        ]);
    }
}

const DESCRIPTION: &str = "\
Vehicles publish telemetry over MQTT (`{prefix}/{vehicle_id}/{raw_log|sensor_log|vehicle_log}`); \
the gateway stores every message and only after commit streams it over WebSocket.\n\n\
**REST.** `/api/vehicles` lists vehicles with their latest state; \
`/api/vehicles/{vehicle_id}/{type}` pages a vehicle's stored messages by `seq`, each item in the \
shape of a WebSocket data frame; `/api/vehicles/{vehicle_id}/track` gives its positions. Every \
bad parameter is a 400 whose body names it (`parameter`).\n\n\
**Streams.** `GET /api/ws` (all vehicles) and `GET /api/ws/vehicle/{vehicle_id}` upgrade to a \
WebSocket. ";

/// The OpenAPI document, with the long descriptions that do not fit in attributes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let frames_doc = frames_doc();
    let params_doc = stream_params_doc();
    doc.info.description = Some(format!("{DESCRIPTION}{frames_doc}\n\n{params_doc}"));
    let components = doc.components.get_or_insert_with(Default::default);
    components.schemas.extend(frame::schemas());
    for path in ["/api/ws", "/api/ws/vehicle/{vehicle_id}"] {
        if let Some(op) = doc
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| item.get.as_mut())
        {
            let head = op.description.take().unwrap_or_default();
            op.description = Some(format!("{head}\n\n{params_doc}\n\n{frames_doc}"));
        }
    }
    doc
}

/// The OpenAPI document of this gateway, as JSON: [`openapi`] with the commands it accepts
/// (`COMMANDS`) as the `command` fields' values.
pub fn openapi_value(commands: &[String]) -> Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    // unwrap: the document is plain data built from literals; serializing it cannot fail.
    let mut doc = DOC
        .get_or_init(|| serde_json::to_value(openapi()).unwrap())
        .clone();
    for schema in ["CommandRequest", "CommandFrame"] {
        if let Some(command) = doc["components"]["schemas"][schema]["properties"].get_mut("command")
        {
            command["enum"] = json!(commands);
        }
    }
    doc
}

/// [`openapi_value`] as pretty JSON.
pub fn openapi_text(commands: &[String]) -> String {
    // unwrap: a JSON value always serializes.
    serde_json::to_string_pretty(&openapi_value(commands)).unwrap()
}

/// The AsyncAPI 3.0 document of the WebSocket protocol; `host` is where clients connect.
pub fn asyncapi(host: &str, commands: &[String]) -> Value {
    let openapi = openapi_value(commands);
    let all_schemas = &openapi["components"]["schemas"];
    // The frames' schemas and what they contain, carried over from the OpenAPI components.
    let schemas: Map<String, Value> = frame::schemas()
        .into_iter()
        .map(|(name, _)| {
            let schema = all_schemas[&name].clone();
            (name, schema)
        })
        .collect();

    let mut messages = Map::new();
    for f in SERVER_FRAMES.iter().chain(CLIENT_FRAMES) {
        let example = all_schemas[f.schema]["examples"][0].clone();
        messages.insert(f.id.into(), message(f, example));
    }

    // Both channels carry every message, both ways.
    let channel_messages = || -> Value {
        let refs: Map<String, Value> = SERVER_FRAMES
            .iter()
            .chain(CLIENT_FRAMES)
            .map(|f| f.id)
            .map(|id| {
                (
                    id.to_owned(),
                    json!({"$ref": format!("#/components/messages/{id}")}),
                )
            })
            .collect();
        Value::Object(refs)
    };
    // The streams' query parameters, from the type that documents them for OpenAPI too.
    let query_properties: Map<String, Value> =
        StreamQuery::into_params(|| Some(ParameterIn::Query))
            .into_iter()
            .map(|p| {
                let mut schema = serde_json::to_value(&p.schema).unwrap_or(Value::Null);
                if let (Some(description), Value::Object(fields)) = (&p.description, &mut schema) {
                    fields.insert("description".into(), json!(description));
                }
                (p.name, schema)
            })
            .collect();
    let query = json!({"type": "object", "properties": query_properties});
    let bindings = json!({"ws": {"method": "GET", "query": query, "bindingVersion": "0.1.0"}});

    let mut operations = Map::new();
    for (channel, label) in [("allVehicles", "AllVehicles"), ("vehicle", "Vehicle")] {
        let channel_ref = json!({"$ref": format!("#/channels/{channel}")});
        let msg_ref = |id: &str| json!({"$ref": format!("#/channels/{channel}/messages/{id}")});
        operations.insert(
            format!("send{label}Frames"),
            json!({
                "action": "send",
                "channel": channel_ref,
                "title": "Frames the gateway sends",
                "summary": "The connection frame, then data frames in seq order (after any replay or snapshot), and answers to client frames.",
                "messages": SERVER_FRAMES.iter().map(|f| msg_ref(f.id)).collect::<Vec<_>>(),
            }),
        );
        for f in CLIENT_FRAMES {
            let mut operation = json!({
                "action": "receive",
                "channel": channel_ref,
                "title": f.title,
                "summary": f.summary,
                "messages": [msg_ref(f.id)],
            });
            if let Some(reply) = f.reply {
                operation["reply"] = json!({"channel": channel_ref, "messages": [msg_ref(reply)]});
            }
            operations.insert(format!("receive{label}{}", capitalize(f.id)), operation);
        }
    }

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "SEANO telemetry gateway: WebSocket streams",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!("Telemetry from the SEANO fleet, streamed only after it is committed to the database.\n\n{}\n\n{}", frames_doc(), stream_params_doc()),
            "license": {"name": "MIT"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "gateway": {
                "host": host,
                "protocol": "ws",
                "description": "This gateway (use wss behind a TLS proxy)."
            }
        },
        "channels": {
            "allVehicles": {
                "address": "/api/ws",
                "title": "All vehicles",
                "description": "Every vehicle's telemetry; `subscribe`/`unsubscribe` narrow or widen it.",
                "messages": channel_messages(),
                "bindings": bindings,
            },
            "vehicle": {
                "address": "/api/ws/vehicle/{vehicle_id}",
                "title": "One vehicle",
                "description": "One vehicle's telemetry (`subscribe` may add others). A non-integer id is an HTTP 400 before the upgrade.",
                "parameters": {"vehicle_id": {"description": "Vehicle id (a positive integer) or registration code (USV-003)."}},
                "messages": channel_messages(),
                "bindings": bindings,
            }
        },
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas,
        }
    })
}

fn message(f: &FrameDoc, example: Value) -> Value {
    let mut m = json!({
        "name": f.id,
        "title": f.title,
        "summary": f.summary,
        "contentType": "application/json",
        "payload": {"$ref": format!("#/components/schemas/{}", f.schema)},
    });
    if !example.is_null() {
        m["examples"] = json!([{"name": f.id, "payload": example}]);
    }
    m
}

fn capitalize(s: &str) -> String {
    s.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}
