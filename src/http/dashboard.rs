//! `/`: the live dashboard in `static/`, compiled into the binary so that the gateway serves it
//! from any working directory. Plain HTML, CSS and ES modules: no build step, nothing from a CDN.

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{web, HttpResponse};

/// (URL path, content type, file contents).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../static/index.html"),
    ),
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("../../static/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/app.js"),
    ),
    (
        "/seano-client.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/seano-client.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../static/style.css"),
    ),
];

/// Registers one GET route per file.
pub fn routes(cfg: &mut web::ServiceConfig) {
    for (path, content_type, body) in ASSETS {
        cfg.route(
            path,
            web::get().to(move || async move {
                HttpResponse::Ok()
                    .content_type(*content_type)
                    // Revalidate each load so a new gateway version's dashboard is picked up.
                    .insert_header(CacheControl(vec![CacheDirective::NoCache]))
                    .body(*body)
            }),
        );
    }
}
