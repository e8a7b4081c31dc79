//! `GET /export/app-keys.csv` and `GET /export/app-keys.xlsx`: the export, for a caller with auth
//! headers or a single-use ticket. The CSV streams page by page; the workbook is built in a
//! temporary file and streamed from it.
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{error_response, ClientAddr};
use crate::domain::Resource;
use crate::error::AppError;
use crate::service::keys::export;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct ExportParams {
    ticket: Option<String>,
}

/// The account to export, from a ticket or from credentials allowed to read keys.
async fn account_to_export(
    state: &AppState,
    peer: &ClientAddr,
    headers: &HeaderMap,
    ticket: Option<String>,
) -> Result<String, Response> {
    if let Some(ticket) = ticket {
        return export::redeem_ticket(&state.store, &ticket).await.map_err(|error| error_response(&error));
    }
    match state.auth.resolve(headers, peer.0).await {
        // Like the listing it exports.
        Ok(Some(principal)) if Resource::READ_KEYS.iter().any(|r| principal.holds(*r)) => {
            match state.auth.admit(&principal, peer.0, crate::auth::user_agent(headers), 1).await.refused {
                Some(refused) => Err(error_response(&refused)),
                None => Ok(principal.account_id.clone()),
            }
        }
        Ok(Some(_)) => Err(error_response(&AppError::forbidden(Resource::READ_KEYS.iter().map(|r| r.id())))),
        Ok(None) => Err(error_response(&AppError::Unauthenticated)),
        Err(error) => Err(error_response(&error)),
    }
}

fn attachment(mut response: Response, content_type: &'static str, filename: &'static str) -> Response {
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    out.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static(filename));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn app_keys_csv(
    State(state): State<AppState>,
    peer: ClientAddr,
    headers: HeaderMap,
    Query(params): Query<ExportParams>,
) -> Response {
    let account_id = match account_to_export(&state, &peer, &headers, params.ticket).await {
        Ok(account_id) => account_id,
        Err(refused) => return refused,
    };
    let body = Body::from_stream(export::stream(state.store.clone(), account_id));
    attachment(body.into_response(), "text/csv; charset=utf-8", "attachment; filename=\"app-keys.csv\"")
}

pub async fn app_keys_xlsx(
    State(state): State<AppState>,
    peer: ClientAddr,
    headers: HeaderMap,
    Query(params): Query<ExportParams>,
) -> Response {
    let account_id = match account_to_export(&state, &peer, &headers, params.ticket).await {
        Ok(account_id) => account_id,
        Err(refused) => return refused,
    };
    let file = match export::workbook(&state.store, &account_id).await {
        Ok(file) => file,
        Err(error) => return error_response(&error),
    };
    // The open file outlives its name: remove the name now, stream the contents.
    let opened = match file.reopen() {
        Ok(opened) => opened,
        Err(error) => return error_response(&AppError::Internal(error.into())),
    };
    drop(file);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(opened)));
    attachment(
        body.into_response(),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "attachment; filename=\"app-keys.xlsx\"",
    )
}
