//! `GET /graphql/ws`: GraphQL subscriptions over WebSocket (`graphql-transport-ws`, and the older
//! `graphql-ws`), authenticated by the `connection_init` payload: `{"Authorization": "Bearer …"}`
//! or the key headers (`X-VTEX-API-AppKey` / `X-VTEX-API-AppToken`, or `X-API-…`), and `X-Account`.
//! A refused credential closes the connection (async-graphql closes with 1002 and the error's
//! message as the reason).
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{Data, ErrorExtensions};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use std::sync::Arc;

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
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let HttpState { app, schema, .. } = state;
    let client_ip = peer.0;
    upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |socket| {
        GraphQLWebSocket::new(socket, schema.strict().clone(), protocol)
            .on_connection_init(move |payload| connection_init(app, client_ip, payload))
            .serve()
    })
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
