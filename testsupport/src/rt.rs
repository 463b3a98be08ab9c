//! Async code inside a namespace (feature `tokio`, on by default).
//!
//! A socket belongs to the network namespace of the thread that creates it.
//! A current-thread tokio runtime whose thread has entered a namespace
//! therefore creates all its sockets there. Two ways to use that:
//!
//! * [`Netns::block_on`]: run one future to completion from a synchronous test.
//! * [`Netns::tokio_runtime`]: a long-lived runtime on its own thread inside
//!   the namespace; [`NsRuntime::spawn`] returns a normal
//!   `tokio::task::JoinHandle` that an async test (running in the host
//!   namespace on its own runtime) can `.await`.
//!
//! ```no_run
//! async fn backend_in_namespace(lab: &testsupport::Lab) -> Result<(), Box<dyn std::error::Error>> {
//!     let server = lab.netns("srv")?;
//!     let rt = server.tokio_runtime()?;
//!     // Bound inside `srv`, awaited from the test's own runtime.
//!     let listener = rt
//!         .spawn(async { tokio::net::TcpListener::bind("127.0.0.1:8080").await })
//!         .await??;
//!     // Keep using `listener` from tasks spawned on `rt`.
//!     rt.spawn(async move { listener.accept().await });
//!     Ok(())
//! }
//! ```

use std::future::Future;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

use crate::error::{io_err, Error, Result};
use crate::lab::Netns;

impl Netns {
    /// Run `fut` to completion on a current-thread tokio runtime whose thread
    /// is inside this namespace. Do not call from inside an async context
    /// (it blocks); use [`Netns::tokio_runtime`] there.
    pub fn block_on<F>(&self, fut: F) -> Result<F::Output>
    where
        F: Future + Send,
        F::Output: Send,
    {
        self.run(move || {
            let rt = Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(io_err("building a tokio runtime"))?;
            Ok(rt.block_on(fut))
        })?
    }

    /// Start a current-thread tokio runtime on a dedicated thread inside this
    /// namespace. Tasks spawned on it run on that thread, so the sockets they
    /// create live in the namespace. Dropping it stops the runtime.
    pub fn tokio_runtime(&self) -> Result<NsRuntime> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel::<Result<Handle>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = self.spawn_thread(move || {
            let rt = match Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = handle_tx.send(Err(Error::Io {
                        context: "building a tokio runtime".into(),
                        source: e,
                    }));
                    return;
                }
            };
            let _ = handle_tx.send(Ok(rt.handle().clone()));
            rt.block_on(async {
                let _ = stop_rx.await;
            });
            rt.shutdown_timeout(Duration::from_secs(2));
        })?;
        let handle = match handle_rx.recv() {
            Ok(handle) => handle?,
            // The thread ended without sending: setns failed.
            Err(_) => {
                return match thread.join() {
                    Ok(Err(e)) => Err(e),
                    _ => Err(Error::Io {
                        context: format!("starting a runtime in netns {}", self.name()),
                        source: std::io::Error::other("runtime thread ended early"),
                    }),
                };
            }
        };
        Ok(NsRuntime {
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

/// A tokio runtime running on a thread inside a namespace.
#[derive(Debug)]
pub struct NsRuntime {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl NsRuntime {
    /// The runtime's handle (spawn from anywhere; tasks run in the namespace).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Spawn `fut` on the namespace's runtime.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(fut)
    }

    /// Run `fut` on the namespace's runtime and block until it finishes.
    /// A panic in `fut` propagates. Not for use inside an async context:
    /// there, `.await` the handle from [`NsRuntime::spawn`].
    pub fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let task = self.handle.spawn(fut);
        self.handle.spawn(async move {
            let _ = tx.send(task.await);
        });
        match rx.recv() {
            Ok(Ok(value)) => value,
            Ok(Err(join_error)) => match join_error.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("task in namespace runtime was cancelled: {e}"),
            },
            Err(_) => panic!("namespace runtime stopped while a task was running"),
        }
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
