//! Graceful shutdown: one trigger, many listeners.
//!
//! Every part of the daemon holds a [`Shutdown`] and selects on
//! [`Shutdown::wait`]; the daemon holds the [`ShutdownTrigger`]. Once fired,
//! `wait` returns at once for every clone, also for clones made later.

use tokio::sync::watch;

/// Fires the shutdown of every [`Shutdown`] made from it.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// A handle that learns when the daemon stops.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// A new trigger and its first listener.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    /// Returns once shutdown was triggered (or the trigger was dropped).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means the trigger is gone: that is a shutdown too.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wait_returns_after_trigger_for_old_and_new_clones() {
        let (trigger, shutdown) = channel();
        let early = shutdown.clone();
        let pending = tokio::time::timeout(Duration::from_millis(20), early.wait()).await;
        assert!(pending.is_err(), "wait returned before the trigger");
        trigger.trigger();
        early.wait().await;
        // A clone made after the trigger returns at once too.
        let late = shutdown.clone();
        tokio::time::timeout(Duration::from_millis(100), late.wait())
            .await
            .expect("a late clone must see the shutdown");
    }

    #[tokio::test]
    async fn dropped_trigger_counts_as_shutdown() {
        let (trigger, shutdown) = channel();
        drop(trigger);
        tokio::time::timeout(Duration::from_secs(1), shutdown.wait())
            .await
            .expect("wait must return when the trigger is dropped");
    }
}
