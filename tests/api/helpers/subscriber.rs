//! A `graphql-transport-ws` client over a real WebSocket, as GraphQL clients speak it.
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Subscriber {
    socket: Socket,
}

/// How a connection ended or what it said next.
#[derive(Debug)]
pub enum Frame {
    Message(Value),
    /// The close code and reason.
    Closed(Option<u16>, String),
}

impl Subscriber {
    /// Connects to `address` (`http://…`) and sends `connection_init` with `payload`; returns the
    /// subscriber and the server's first answer (`connection_ack`, or the close).
    pub async fn connect(address: &str, payload: Value) -> (Self, Frame) {
        let url = format!("{}/graphql/ws", address.replacen("http", "ws", 1));
        let mut request = url.into_client_request().expect("a request");
        request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("graphql-transport-ws"));
        let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("the WebSocket connects");
        let mut subscriber = Self { socket };
        subscriber.send(json!({ "type": "connection_init", "payload": payload })).await;
        let answer = subscriber.next(Duration::from_secs(5)).await;
        (subscriber, answer)
    }

    pub async fn send(&mut self, message: Value) {
        self.socket.send(Message::text(message.to_string())).await.expect("sent");
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next message (pings answered, skipped), or the close; panics after `within`.
    pub async fn next(&mut self, within: Duration) -> Frame {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next()).await.expect("a message in time");
            match message {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON");
                    if value["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return Frame::Message(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    let reason = frame.as_ref().map(|f| f.reason.to_string()).unwrap_or_default();
                    return Frame::Closed(frame.map(|f| u16::from(f.code)), reason);
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Frame::Closed(None, String::new()),
            }
        }
    }

    /// The next message, which must be one.
    pub async fn message(&mut self, within: Duration) -> Value {
        match self.next(within).await {
            Frame::Message(value) => value,
            Frame::Closed(code, reason) => panic!("the connection closed ({code:?} {reason}) instead of a message"),
        }
    }

    /// Asserts nothing arrives for `quiet`.
    pub async fn assert_quiet(&mut self, quiet: Duration) {
        if let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(quiet, self.socket.next()).await {
            panic!("expected nothing, got {text}");
        }
    }
}
