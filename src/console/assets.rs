//! The web UI and the OpenAPI description, embedded in the binary: no Node toolchain to build
//! or run the console.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");
const OPENAPI: &str = include_str!("assets/openapi.json");

pub(super) async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX)
}

pub(super) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

pub(super) async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

pub(super) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_description_is_json_and_names_every_path() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).expect("openapi.json");
        let paths = doc["paths"].as_object().expect("paths");
        for path in [
            "/api/v1/summary",
            "/api/v1/routes",
            "/api/v1/overview",
            "/api/v1/routes/{app}/{route}",
            "/api/v1/routes/{app}/{route}/windows",
            "/api/v1/alerts",
            "/api/v1/decisions",
            "/api/v1/decisions/{id}",
            "/api/v1/decisions/{id}/approve",
            "/api/v1/decisions/{id}/reject",
            "/api/v1/cost",
            "/api/v1/artifacts",
            "/api/v1/quantization/jobs",
            "/api/v1/stream",
        ] {
            assert!(paths.contains_key(path), "{path} missing");
        }
    }
}
