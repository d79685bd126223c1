//! Where commands run. Every target runs a POSIX `sh` script and hands back its stdin, its
//! merged output and its exit; [`crate::deploy::exec`] adds timeouts, line capture and killing,
//! once, for all of them. The scripts themselves are built by [`crate::deploy::plan`].

mod local;
mod ssh;

use std::path::Path;
use std::pin::Pin;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config;
use crate::domain::HostSpec;

pub use local::Local;
pub use ssh::Ssh;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot connect to {host}: {message}")]
    Connect { host: String, message: String },
    #[error("cannot start a command on {host}: {message}")]
    Spawn { host: String, message: String },
    #[error("lost the command on {host}: {message}")]
    Lost { host: String, message: String },
}

/// A started script: write its stdin (if asked for), read its output, await its exit code
/// (`None` when it was killed by a signal).
pub struct Process<'a> {
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send + 'a>>>,
    pub stdout: Pin<Box<dyn AsyncRead + Send + 'a>>,
    pub exit: BoxFuture<'a, Result<Option<i32>, TargetError>>,
}

pub trait Target: Send + Sync {
    /// The host as written in config, for logs and errors.
    fn host(&self) -> &HostSpec;

    /// Starts `script` under `sh -c`, in a new process group led by that shell.
    fn spawn<'a>(
        &'a self,
        script: &'a str,
        stdin: bool,
    ) -> BoxFuture<'a, Result<Process<'a>, TargetError>>;

    /// Ends the connection (SSH: the multiplexed master).
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// Opens a target for `host`: SSH connects its master connection now, so a bad host fails here.
pub async fn connect(
    host: &HostSpec,
    settings: &config::Ssh,
    control_dir: &Path,
) -> Result<Box<dyn Target>, TargetError> {
    match host {
        HostSpec::Local => Ok(Box::new(Local::new())),
        HostSpec::Ssh { .. } => Ok(Box::new(Ssh::connect(host, settings, control_dir).await?)),
    }
}
