//! One shutdown path for every node: a [`Shutdown`] handle that Ctrl-C / SIGTERM (or a test, or the
//! caller) triggers once, awaited by async tasks and polled by blocking loops alike.

use std::future::Future;

use tokio_util::sync::CancellationToken;

/// A cancellation handle shared by a node's tasks and threads; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle triggered on Ctrl-C or SIGTERM (call inside a tokio runtime).
    pub fn on_signal() -> Self {
        let s = Self::new();
        let s2 = s.clone();
        tokio::spawn(async move {
            signal().await;
            s2.trigger();
        });
        s
    }

    /// A handle triggered when `fut` completes (the form tests and embedders pass: a oneshot, a sleep).
    pub fn when(fut: impl Future<Output = ()> + Send + 'static) -> Self {
        let s = Self::new();
        let s2 = s.clone();
        tokio::spawn(async move {
            fut.await;
            s2.trigger();
        });
        s
    }

    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// For blocking loops off the executor.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once the shutdown is triggered.
    pub async fn wait(&self) {
        self.token.cancelled().await
    }
}

/// Ctrl-C, or SIGTERM on Unix (what systemd and `docker stop` send).
async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
