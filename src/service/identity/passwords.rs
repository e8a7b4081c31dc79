//! Password hashing and verification: off the async threads, at most `--max-concurrent-logins` at
//! once, each in argon2 working memory allocated at start and reused (one `HashMemory` per permit).
//!
//! argon2 takes 19 MiB and a core for tens of milliseconds, so the bound keeps a login storm from
//! starving everything else; the fixed memory keeps what logins hold flat, whatever the allocator
//! does with freed buffers.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Semaphore;

use crate::domain::{HashMemory, Password};
use crate::error::{AppError, AppResult};
use crate::service::store::Store;

/// The hasher, installed in the store at start (`service::open`).
pub struct Passwords {
    permits: Semaphore,
    limit: usize,
    /// One buffer per permit. Taken from the front and put back at the end, so every buffer is
    /// used in turn.
    memory: Mutex<VecDeque<HashMemory>>,
}

/// Hashes a password off the async threads, within the argon2 concurrency bound.
pub async fn hash(store: &Store, password: Password) -> AppResult<String> {
    store.installed::<Passwords>()?.hash(password).await
}

/// Verifies a password off the async threads, within the argon2 concurrency bound; `None` (an
/// unknown user) costs the same and never verifies.
pub async fn verify(store: &Store, password: Password, phc: Option<String>) -> AppResult<bool> {
    store.installed::<Passwords>()?.verify(password, phc).await
}

/// Computes the unknown-user dummy hash now, off the async threads, not in the first login.
pub async fn prepare(store: &Store) -> AppResult<()> {
    store.installed::<Passwords>()?.prepare().await
}

/// Password verifications running now (each holds one of the bounded permits).
pub fn in_progress(store: &Store) -> usize {
    store.installed::<Passwords>().map(|p| p.in_progress()).unwrap_or(0)
}

impl Passwords {
    /// Allocates (and makes resident) `limit` working memories: 19 MiB each.
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        Self {
            permits: Semaphore::new(limit),
            limit,
            memory: Mutex::new((0..limit).map(|_| HashMemory::new()).collect()),
        }
    }

    /// An argon2id PHC string for `password`, with a fresh salt.
    pub async fn hash(self: &Arc<Self>, password: Password) -> AppResult<String> {
        self.run(move |memory| password.hash(memory)).await?.map_err(AppError::Internal)
    }

    /// Whether `password` matches the stored hash. With no stored hash (an unknown email) it is
    /// verified against a hash of a random password, so that costs the same as a wrong password.
    pub async fn verify(self: &Arc<Self>, password: Password, phc: Option<String>) -> AppResult<bool> {
        self.run(move |memory| match phc {
            Some(phc) => password.verify(&phc, memory),
            None => {
                let dummy = Password::dummy_hash(memory);
                password.verify(dummy, memory)
            }
        })
        .await
    }

    /// Computes the unknown-email hash now, so the first login does not pay for it.
    pub async fn prepare(self: &Arc<Self>) -> AppResult<()> {
        self.run(|memory| {
            Password::dummy_hash(memory);
        })
        .await
    }

    /// Verifications and hashes running now (each holds one permit).
    pub fn in_progress(&self) -> usize {
        self.limit.saturating_sub(self.permits.available_permits())
    }

    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&mut HashMemory) -> T + Send + 'static,
    ) -> AppResult<T> {
        let _permit = self.permits.acquire().await.map_err(|e| AppError::Internal(e.into()))?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            // Every permit holder finds a buffer; one lost to a panic is replaced here.
            let mut memory = this.buffers().pop_front().unwrap_or_default();
            let result = work(&mut memory);
            this.buffers().push_back(memory);
            result
        })
        .await
        .map_err(|e| AppError::Internal(e.into()))
    }

    fn buffers(&self) -> std::sync::MutexGuard<'_, VecDeque<HashMemory>> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn logins_reuse_the_buffers_made_at_start_in_turn() {
        let passwords = Arc::new(Passwords::new(2));
        let addresses = || passwords.buffers().iter().map(HashMemory::address).collect::<Vec<_>>();
        let at_start = addresses();
        assert_eq!(at_start.len(), 2);
        let password = Password::parse("correct horse battery").expect("valid");
        let hash = passwords.hash(password.clone()).await.expect("hash");
        assert!(passwords.verify(password.clone(), Some(hash.clone())).await.expect("verify"));
        assert!(!passwords.verify(Password::for_verification("wrong password!"), Some(hash)).await.expect("verify"));
        assert!(!passwords.verify(password, None).await.expect("verify"));
        // Four computations in turn through two buffers: the same two, in the same order, none added.
        assert_eq!(addresses(), at_start);
        assert_eq!(passwords.in_progress(), 0);
    }
}
