//! Shutdown signal handed to every `serve` loop and connection task.
//!
//! Two stages: *stop accepting* (listeners close, HTTP connections finish
//! their in-flight requests and close, TCP/UDP flows go on) and *abort*
//! (everything still open is closed now). A child is stopped when its parent
//! is, and can also be stopped alone (a listener removed by a reload).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

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

    /// A [`CancelWatch`] on stage 1.
    pub(crate) fn watch_stopping(&self) -> CancelWatch {
        CancelWatch::new(self.accept.clone())
    }

    /// A [`CancelWatch`] on stage 2.
    pub(crate) fn watch_aborted(&self) -> CancelWatch {
        CancelWatch::new(self.abort.clone())
    }
}

/// Wakes the task waiting on a [`CancelWatch`] and notes that the watch
/// itself was woken.
#[derive(Default)]
struct WatchWake {
    fired: AtomicBool,
    parent: AtomicWaker,
}

impl Wake for WatchWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.parent.wake();
    }
}

/// A cancellation token to race against I/O in a hot loop.
///
/// `select!` polls every branch each time its task wakes, and polling a
/// token's `cancelled()` future that is already waiting takes the lock of
/// the token's waiter list, which every connection watching the same token
/// shares. A `CancelWatch` registers with the token once, under a waker of
/// its own, and polls the token again only when that waker fired: an I/O
/// wake-up costs two atomic operations instead of a shared lock.
pub(crate) struct CancelWatch {
    wake: Arc<WatchWake>,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    registered: bool,
    done: bool,
}

impl std::fmt::Debug for CancelWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelWatch")
            .field("registered", &self.registered)
            .field("done", &self.done)
            .finish()
    }
}

impl CancelWatch {
    pub(crate) fn new(token: CancellationToken) -> Self {
        let wake = Arc::new(WatchWake::default());
        CancelWatch {
            wake,
            cancelled: Box::pin(token.cancelled_owned()),
            registered: false,
            done: false,
        }
    }

    /// Ready once the token is cancelled (and from then on).
    pub(crate) fn poll_cancelled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        self.wake.parent.register(cx.waker());
        if !self.registered || self.wake.fired.swap(false, Ordering::AcqRel) {
            self.registered = true;
            // Made here, not kept: this runs once, and again only after
            // the token woke us.
            let waker = Waker::from(Arc::clone(&self.wake));
            let mut own = Context::from_waker(&waker);
            if self.cancelled.as_mut().poll(&mut own).is_ready() {
                self.done = true;
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }

    /// Resolves once the token is cancelled.
    #[cfg(test)]
    pub(crate) fn cancelled(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| self.poll_cancelled(cx))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn watch_fires_once_cancelled_and_stays_ready() {
        let root = Shutdown::new();
        let mut stop = root.watch_stopping();
        let mut abort = root.watch_aborted();
        // Not cancelled: pending, however often it is polled.
        for _ in 0..3 {
            let r =
                tokio::time::timeout(std::time::Duration::from_millis(20), stop.cancelled()).await;
            assert!(r.is_err());
        }
        let waiter = tokio::spawn(async move {
            stop.cancelled().await;
            stop
        });
        tokio::task::yield_now().await;
        root.stop_accepting();
        let mut stop = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken by the cancellation")
            .unwrap();
        stop.cancelled().await;
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), abort.cancelled())
                .await
                .is_err(),
            "stage 2 not reached"
        );
        root.abort();
        abort.cancelled().await;
    }

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
