//! The admin API under `/_fake/` (JSON): what the fake received and created, and the faults
//! it injects. Admin requests are not recorded and need no credentials.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::callbacks::{self, ManualCallbackError};
use crate::faults::{GlobalFaults, NumberRule};
use crate::store::RequestRecord;

/// Routes relative to `/_fake`.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/health", get(health))
        .route("/requests", get(requests))
        .route("/messages", get(messages))
        .route("/messages/{sid}/callbacks", post(send_callback))
        .route("/callbacks", get(callbacks))
        .route("/reset", post(reset))
        .route("/faults", get(get_faults).put(put_faults))
        .route("/numbers", get(numbers))
        .route(
            "/numbers/{number}",
            put(put_number).delete(delete_number).get(get_number),
        )
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "openapi_check": state.openapi.is_some(),
        "accounts": state.accounts.len(),
    }))
}

/// Filters of `GET /_fake/requests`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RequestFilter {
    /// Only requests with a larger id (poll for what is new).
    since: Option<u64>,
    /// Only requests whose path starts with this.
    path_prefix: Option<String>,
    /// Only this method.
    method: Option<String>,
}

async fn requests(
    State(state): State<Arc<AppState>>,
    Query(filter): Query<RequestFilter>,
) -> Json<Value> {
    let store = state.store();
    let selected: Vec<&RequestRecord> = store
        .requests
        .iter()
        .filter(|r| filter.since.is_none_or(|since| r.id > since))
        .filter(|r| {
            filter
                .path_prefix
                .as_deref()
                .is_none_or(|prefix| r.path.starts_with(prefix))
        })
        .filter(|r| {
            filter
                .method
                .as_deref()
                .is_none_or(|m| r.method.eq_ignore_ascii_case(m))
        })
        .collect();
    Json(json!(selected))
}

/// Body of `POST /_fake/messages/{sid}/callbacks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackRequest {
    /// The `MessageStatus` to report.
    status: String,
    /// `ErrorCode` to include.
    #[serde(default)]
    error_code: Option<u32>,
}

async fn send_callback(
    State(state): State<Arc<AppState>>,
    Path(sid): Path<String>,
    Json(request): Json<CallbackRequest>,
) -> Response {
    match callbacks::send_now(&state, &sid, &request.status, request.error_code).await {
        Ok(attempt) => Json(attempt).into_response(),
        Err(e @ ManualCallbackError::UnknownMessage(_)) => {
            (StatusCode::NOT_FOUND, Json(json!({"error": e.to_string()}))).into_response()
        }
        Err(e @ ManualCallbackError::NoStatusCallback(_)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn messages(State(state): State<Arc<AppState>>) -> Json<Value> {
    let store = state.store();
    Json(Value::Array(
        store.messages.iter().map(|m| m.admin_view()).collect(),
    ))
}

async fn callbacks(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!(state.store().callbacks))
}

async fn reset(State(state): State<Arc<AppState>>) -> StatusCode {
    state.store().reset();
    StatusCode::NO_CONTENT
}

async fn get_faults(State(state): State<Arc<AppState>>) -> Json<GlobalFaults> {
    Json(state.store().faults.global.clone())
}

async fn put_faults(
    State(state): State<Arc<AppState>>,
    Json(faults): Json<GlobalFaults>,
) -> Response {
    let rates = [faults.rate_429, faults.rate_5xx];
    if rates.iter().any(|r| !(0.0..=1.0).contains(r)) || faults.rate_429 + faults.rate_5xx > 1.0 {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "rates must be within 0..=1 and add up to at most 1"})),
        )
            .into_response();
    }
    if !(500..=599).contains(&faults.status_5xx) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "status_5xx must be a 5xx status"})),
        )
            .into_response();
    }
    state.store().faults.set(faults.clone());
    Json(faults).into_response()
}

async fn numbers(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!(state.store().numbers))
}

async fn get_number(State(state): State<Arc<AppState>>, Path(number): Path<String>) -> Response {
    match state.store().numbers.get(&number) {
        Some(rule) => Json(rule.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn put_number(
    State(state): State<Arc<AppState>>,
    Path(number): Path<String>,
    Json(rule): Json<NumberRule>,
) -> Json<NumberRule> {
    state.store().numbers.insert(number, rule.clone());
    Json(rule)
}

async fn delete_number(
    State(state): State<Arc<AppState>>,
    Path(number): Path<String>,
) -> StatusCode {
    match state.store().numbers.remove(&number) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}
