//! Supervision of a peer's background tasks: none may end or panic unnoticed.
//!
//! Every long-running task of a peer (the Raft listener, the DNS and HTTP servers, the
//! leader's loops, the proposer) is started with [`Tasks::spawn`]. A task that returns
//! or panics before shutdown was asked for is a failure of the whole peer: the first one
//! is recorded as the cause and shutdown begins, and the process exits non-zero so that
//! its supervisor (systemd's `Restart=`, see cluster/switchboard.service) starts it again.
//! A peer that ran on with a dead part, answering `/health` while DNS serves a table that
//! no longer changes, would be worse than one that stops.
//!
//! Short-lived tasks (one per connection or request) are not supervised: their failure is
//! the failure of one request.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

/// The set of a peer's supervised tasks, and the token that stops them all.
#[derive(Clone)]
pub struct Tasks {
    shutdown: CancellationToken,
    cause: Arc<Mutex<Option<String>>>,
}

impl Tasks {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self { shutdown, cause: Arc::default() }
    }

    /// The token every task watches to stop.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Runs `task` in the background; its end before shutdown fails the peer.
    pub fn spawn<F>(&self, name: &'static str, task: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let tasks = self.clone();
        tokio::spawn(async move {
            let ended = AssertUnwindSafe(task).catch_unwind().await;
            if tasks.shutdown.is_cancelled() {
                return;
            }
            match ended {
                Ok(()) => tasks.fail(format!("the {name} task ended")),
                Err(panic) => tasks.fail(format!("the {name} task panicked: {}", panic_message(&*panic))),
            }
        })
    }

    /// Records `cause` (the first one wins) and begins shutdown.
    pub fn fail(&self, cause: String) {
        let mut first = self.cause.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if first.is_none() {
            *first = Some(cause);
        }
        drop(first);
        self.shutdown.cancel();
    }

    /// Why the peer is stopping, if something failed (rather than a signal or a caller
    /// asking for shutdown).
    pub fn failure(&self) -> Option<String> {
        self.cause.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_ends_early_fails_the_peer_and_stops_the_rest() {
        let tasks = Tasks::new(CancellationToken::new());
        let other = tasks.shutdown().clone();
        tasks.spawn("steady", async move { other.cancelled().await });
        tasks.spawn("short", async {});
        tokio::time::timeout(std::time::Duration::from_secs(5), tasks.shutdown().cancelled()).await.unwrap();
        assert_eq!(tasks.failure().as_deref(), Some("the short task ended"));
    }

    #[tokio::test]
    async fn a_panic_is_named_and_shutdown_is_not_a_failure() {
        let tasks = Tasks::new(CancellationToken::new());
        tasks.spawn("broken", async { panic!("boom") }).await.unwrap();
        assert_eq!(tasks.failure().as_deref(), Some("the broken task panicked: boom"));

        let calm = Tasks::new(CancellationToken::new());
        calm.shutdown().cancel();
        calm.spawn("stopping", async {}).await.unwrap();
        assert_eq!(calm.failure(), None, "a task that ends after shutdown was asked for is no failure");
    }
}
