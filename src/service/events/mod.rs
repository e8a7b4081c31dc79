//! What happened, and who hears of it: the audit log (`audit`, with `Ctx`, the acting principal of
//! every mutation), key events in the outbox (`outbox`, with the replica's `EventBus`), webhook
//! endpoints and deliveries (`webhooks`) and, on PostgreSQL, the feed of other replicas' changes
//! (`follow`).
pub mod audit;
pub mod follow;
pub mod outbox;
pub mod webhooks;

pub use outbox::{EventBus, EventType, KeyEvent};
