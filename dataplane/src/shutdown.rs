//! Shutdown signal handed to every `serve` loop and connection task.
//!
//! Two stages: *stop accepting* (listeners close, HTTP connections finish
//! their in-flight requests and close, TCP/UDP flows go on) and *abort*
//! (everything still open is closed now). A child is stopped when its parent
//! is, and can also be stopped alone (a listener removed by a reload).

use tokio_util::sync::CancellationToken;

/// Two-stage shutdown signal (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    accept: CancellationToken,
    abort: CancellationToken,
}

impl Shutdown {
    /// A fresh signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// A child: stopped when `self` is, or on its own.
    pub fn child(&self) -> Self {
        Shutdown {
            accept: self.accept.child_token(),
            abort: self.abort.child_token(),
        }
    }

    /// Stage 1: stop accepting new connections; in-flight work finishes.
    pub fn stop_accepting(&self) {
        self.accept.cancel();
    }

    /// Stage 2: close everything now (implies stage 1).
    pub fn abort(&self) {
        self.accept.cancel();
        self.abort.cancel();
    }

    /// Whether stage 1 was reached.
    pub fn is_stopping(&self) -> bool {
        self.accept.is_cancelled()
    }

    /// Resolves at stage 1.
    pub async fn stopping(&self) {
        self.accept.cancelled().await
    }

    /// Resolves at stage 2.
    pub async fn aborted(&self) {
        self.abort.cancelled().await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn child_follows_parent_not_the_reverse() {
        let root = Shutdown::new();
        let a = root.child();
        let b = root.child();
        a.stop_accepting();
        assert!(a.is_stopping() && !root.is_stopping() && !b.is_stopping());
        root.abort();
        b.aborted().await;
        assert!(b.is_stopping());
    }
}
