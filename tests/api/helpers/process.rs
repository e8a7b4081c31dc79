//! Child processes the tests start (the `appkeys` binary, nginx, chromedriver): one guard that ends
//! a child however the test ends, one free port, one readiness poll.
use std::future::Future;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A running child process, killed (SIGKILL) and reaped when dropped, even by a failed assertion.
pub struct ChildGuard(Child);

impl ChildGuard {
    pub fn spawn(command: &mut Command, what: &str) -> Self {
        Self(command.spawn().unwrap_or_else(|e| panic!("{what} did not start: {e}")))
    }

    /// Whether the child has exited by itself.
    pub fn has_exited(&mut self) -> bool {
        self.0.try_wait().expect("the child's status").is_some()
    }

    /// Ends the child now (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Asks the child to stop (SIGTERM) and waits for it; `false` if it was still running after
    /// `grace` (then it is killed).
    pub async fn terminate(&mut self, grace: Duration) -> bool {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(sent.success(), "SIGTERM was not delivered");
        let stopped = poll_until(grace, || {
            let exited = self.has_exited();
            async move { exited }
        })
        .await;
        self.kill();
        stopped
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Asks `ready` every 50 ms until it says yes (`true`) or `timeout` has passed (`false`).
pub async fn poll_until<F: Future<Output = bool>>(timeout: Duration, mut ready: impl FnMut() -> F) -> bool {
    let started = Instant::now();
    loop {
        if ready().await {
            return true;
        }
        if started.elapsed() >= timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether something listens on `port` within `timeout`.
pub async fn listening(port: u16, timeout: Duration) -> bool {
    poll_until(timeout, || async move { tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() }).await
}

/// Whether the appkeys server at `address` answers `/readyz` with 200 within `timeout`.
pub async fn ready(address: &str, timeout: Duration) -> bool {
    let client = reqwest::Client::new();
    let url = format!("{address}/readyz");
    poll_until(timeout, || {
        let request = client.get(&url).send();
        async move { request.await.is_ok_and(|r| r.status().is_success()) }
    })
    .await
}
