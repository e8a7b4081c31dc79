//! `GET /export/app-keys.csv`: the export, streamed, for a caller with auth headers or a ticket.
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{error_response, ClientAddr};
use crate::domain::Resource;
use crate::error::AppError;
use crate::service::export;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct ExportParams {
    ticket: Option<String>,
}

pub async fn app_keys_csv(
    State(state): State<AppState>,
    peer: ClientAddr,
    headers: HeaderMap,
    Query(params): Query<ExportParams>,
) -> Response {
    let account_id = match params.ticket {
        Some(ticket) => match export::redeem_ticket(&state.store, &ticket).await {
            Ok(account_id) => account_id,
            Err(error) => return error_response(&error),
        },
        None => match state.auth.resolve(&headers, peer.ip().as_deref()).await {
            Ok(Some(principal)) => {
                // Like the listing it exports: Save user, or the read-only View API keys.
                if !(principal.holds(Resource::SaveUser) || principal.holds(Resource::ApiKeysView)) {
                    return error_response(&AppError::forbidden([Resource::SaveUser.id(), Resource::ApiKeysView.id()]));
                }
                principal.account_id.clone()
            }
            Ok(None) => return error_response(&AppError::Unauthenticated),
            Err(error) => return error_response(&error),
        },
    };
    let mut response = Body::from_stream(export::stream(state.store.clone(), account_id)).into_response();
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    out.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"app-keys.csv\""));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
