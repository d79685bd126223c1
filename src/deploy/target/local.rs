//! The local target: the same scripts, run on this machine. The embedded default, and what the
//! demo uses.

use std::process::Stdio;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::process::Command;

use super::{Process, Target, TargetError};
use crate::domain::HostSpec;

pub struct Local {
    host: HostSpec,
}

impl Local {
    pub fn new() -> Self {
        Self {
            host: HostSpec::Local,
        }
    }
}

impl Default for Local {
    fn default() -> Self {
        Self::new()
    }
}

impl Target for Local {
    fn host(&self) -> &HostSpec {
        &self.host
    }

    fn spawn<'a>(
        &'a self,
        script: &'a str,
        stdin: bool,
    ) -> BoxFuture<'a, Result<Process<'a>, TargetError>> {
        async move {
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(script)
                // Its own process group, like a command started by sshd, so a timeout can kill
                // the step and everything it started.
                .process_group(0)
                .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| TargetError::Spawn {
                    host: "local".into(),
                    message: e.to_string(),
                })?;
            let stdin = child
                .stdin
                .take()
                .map(|s| Box::pin(s) as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>);
            let stdout = Box::pin(child.stdout.take().expect("stdout is piped"));
            let exit = async move {
                child
                    .wait()
                    .await
                    .map(|status| status.code())
                    .map_err(|e| TargetError::Lost {
                        host: "local".into(),
                        message: e.to_string(),
                    })
            }
            .boxed();
            Ok(Process {
                stdin,
                stdout,
                exit,
            })
        }
        .boxed()
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        async {}.boxed()
    }
}
