//! `GET /graphql/ws`: GraphQL subscriptions over WebSocket (`graphql-transport-ws`, and the older
//! `graphql-ws`), authenticated by the `connection_init` payload: `{"Authorization": "Bearer …"}`
//! or the key headers (`X-VTEX-API-AppKey` / `X-VTEX-API-AppToken`, or `X-API-…`), and `X-Account`.
//! A refused `connection_init` closes the socket as the graphql-transport-ws protocol says:
//! `4403: Forbidden` for credentials refused (unknown, inactive, not allowed from this address), `4429`
//! for a rate limit or spent credits, `1013` (try again later) when the database is away.
use async_graphql::http::{WebSocketProtocols, WsMessage, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::{Data, ErrorExtensions};
use axum::extract::ws::{CloseFrame, Message};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use futures::{future, SinkExt as _, StreamExt as _};
use std::sync::Arc;
use std::sync::Mutex;

use super::{ClientAddr, HttpState};
use crate::error::AppError;
use crate::graphql::SocketCredential;
use crate::service::events::audit::RequestMeta;
use crate::state::AppState;

/// The `connection_init` payload entries read as credentials (names are case-insensitive).
const CREDENTIAL_HEADERS: &[&str] =
    &["authorization", "x-vtex-api-appkey", "x-vtex-api-apptoken", "x-api-appkey", "x-api-apptoken", "x-account"];

pub async fn graphql_ws(
    State(state): State<HttpState>,
    peer: ClientAddr,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // The first subprotocol offered that appkeys speaks (as async-graphql-axum's extractor picks it).
    let protocol = headers
        .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|offered| offered.split(',').find_map(|p| p.trim().parse::<WebSocketProtocols>().ok()));
    let Some(protocol) = protocol else {
        return super::request_error(
            axum::http::StatusCode::BAD_REQUEST,
            "offer the WebSocket subprotocol graphql-transport-ws (or graphql-ws)",
        );
    };
    let HttpState { app, schema, .. } = state;
    let client_ip = peer.0;
    upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |socket| async move {
        // async-graphql closes a refused `connection_init` with 1002; the refusal noted here says
        // which close the protocol wants instead.
        let refusal: Arc<Mutex<Option<(u16, String)>>> = Arc::default();
        let noted = refusal.clone();
        let (mut sink, stream) = socket.split();
        let input = stream.take_while(|message| future::ready(message.is_ok())).filter_map(|message| {
            future::ready(match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => Some(message.into_data()),
                _ => None,
            })
        });
        let outgoing = async_graphql::http::WebSocket::new(schema.strict().clone(), input, protocol)
            .on_connection_init(move |payload| async move {
                let refused = connection_init(app, client_ip, payload).await;
                if let Err(error) = &refused {
                    *noted.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(close_for(error));
                }
                refused
            })
            .map(|message| match message {
                WsMessage::Text(text) => Message::Text(text.into()),
                WsMessage::Close(code, reason) => {
                    let refused = refusal.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
                    let (code, reason) = match refused {
                        Some(close) if code == 1002 => close,
                        _ => (code, reason),
                    };
                    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
                }
            });
        futures::pin_mut!(outgoing);
        while let Some(message) = outgoing.next().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
    })
}

/// The close of a refused `connection_init`: the protocol's code for its error, and the error's
/// message as the reason (a close reason holds at most 123 bytes).
fn close_for(error: &async_graphql::Error) -> (u16, String) {
    let code = error.extensions.as_ref().and_then(|e| e.get("code")).map(|code| code.to_string());
    let code = match code.as_deref().map(|c| c.trim_matches('"')) {
        Some("RATE_LIMITED" | "USAGE_EXCEEDED") => 4429,
        Some("UNAVAILABLE") => 1013,
        _ => 4403,
    };
    let mut reason = error.message.clone();
    while reason.len() > 123 {
        reason.pop();
    }
    (code, reason)
}

/// Authenticates the connection; the data it returns is every operation's on this socket.
async fn connection_init(
    app: AppState,
    client_ip: Option<std::net::IpAddr>,
    payload: serde_json::Value,
) -> async_graphql::Result<Data> {
    let headers = credential_headers(&payload);
    let resolved = app.auth.resolve(&headers, client_ip).await;
    match &resolved {
        Ok(Some(principal)) => {
            if let Some(refused) =
                app.auth.admit(principal, client_ip, crate::auth::user_agent(&headers), 1).await.refused
            {
                return Err(refused.extend());
            }
        }
        Ok(None) => return Err(AppError::Unauthenticated.extend()),
        Err(error) => return Err(error.extend()),
    }
    let mut data = Data::default();
    data.insert(Arc::new(resolved));
    data.insert(RequestMeta { request_id: None, client_ip: client_ip.map(|ip| ip.to_string()) });
    data.insert(SocketCredential { headers, client_ip });
    Ok(data)
}

/// The credential entries of a `connection_init` payload as request headers.
fn credential_headers(payload: &serde_json::Value) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Some(entries) = payload.as_object() else {
        return headers;
    };
    for (name, value) in entries {
        let name = name.to_ascii_lowercase();
        if !CREDENTIAL_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let (Ok(name), Some(Ok(value))) =
            (HeaderName::from_bytes(name.as_bytes()), value.as_str().map(HeaderValue::from_str))
        else {
            continue;
        };
        headers.insert(name, value);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_credential_entries_become_headers() {
        let payload = serde_json::json!({
            "Authorization": "Bearer aks_x",
            "X-VTEX-API-AppKey": "k",
            "Cookie": "nope",
            "x-account": 7,
        });
        let headers = credential_headers(&payload);
        assert_eq!(headers.get("authorization").and_then(|v| v.to_str().ok()), Some("Bearer aks_x"));
        assert_eq!(headers.get("x-vtex-api-appkey").and_then(|v| v.to_str().ok()), Some("k"));
        assert!(headers.get("cookie").is_none());
        assert!(headers.get("x-account").is_none(), "not a string");
        assert!(credential_headers(&serde_json::json!(null)).is_empty());
    }
}
