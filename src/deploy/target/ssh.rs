//! The SSH target: system OpenSSH through the `openssh` crate, one multiplexed master connection
//! per host, one channel per script. The operator's ssh_config, agent and known_hosts apply;
//! host keys are checked strictly (an unknown or changed key is an error, never a prompt).

use std::path::Path;

use futures::FutureExt;
use futures::future::BoxFuture;
use openssh::{KnownHosts, Session, SessionBuilder, Stdio};

use super::{Process, Target, TargetError};
use crate::config;
use crate::deploy::shell::quote;
use crate::domain::HostSpec;

pub struct Ssh {
    host: HostSpec,
    name: String,
    session: Session,
}

impl Ssh {
    pub async fn connect(
        host: &HostSpec,
        settings: &config::Ssh,
        control_dir: &Path,
    ) -> Result<Self, TargetError> {
        let name = host.to_string();
        let HostSpec::Ssh {
            user,
            host: addr,
            port,
        } = host
        else {
            unreachable!("Ssh::connect is only called for SSH hosts")
        };
        let connect_err = |message: String| TargetError::Connect {
            host: name.clone(),
            message,
        };
        std::fs::create_dir_all(control_dir).map_err(|e| {
            connect_err(format!("control directory {}: {e}", control_dir.display()))
        })?;
        let mut builder = SessionBuilder::default();
        builder
            .known_hosts_check(KnownHosts::Strict)
            .control_directory(control_dir)
            .connect_timeout(settings.connect_timeout)
            .server_alive_interval(std::time::Duration::from_secs(15));
        if let Some(user) = user {
            builder.user(user.clone());
        }
        if let Some(port) = port {
            builder.port(*port);
        }
        if let Some(key) = &settings.key {
            builder.keyfile(key);
        }
        if let Some(known_hosts) = &settings.known_hosts {
            builder.user_known_hosts_file(known_hosts);
        }
        let session = builder
            .connect(addr)
            .await
            .map_err(|e| connect_err(crate::error::chain(&e)))?;
        Ok(Self {
            host: host.clone(),
            name,
            session,
        })
    }
}

impl Target for Ssh {
    fn host(&self) -> &HostSpec {
        &self.host
    }

    fn spawn<'a>(
        &'a self,
        script: &'a str,
        stdin: bool,
    ) -> BoxFuture<'a, Result<Process<'a>, TargetError>> {
        async move {
            // The remote login shell runs this line; `exec sh -c` makes the script's shell the
            // session leader sshd created, whatever the account's login shell is.
            let line = format!("exec sh -c {}", quote(script));
            let mut child = self
                .session
                .raw_command(line)
                .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .await
                .map_err(|e| TargetError::Spawn {
                    host: self.name.clone(),
                    message: crate::error::chain(&e),
                })?;
            let stdin = child
                .stdin()
                .take()
                .map(|s| Box::pin(s) as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>);
            let stdout = Box::pin(child.stdout().take().expect("stdout is piped"));
            let exit = async move {
                match child.wait().await {
                    Ok(status) => Ok(status.code()),
                    // Killed by a signal, or the connection dropped: OpenSSH cannot tell which.
                    Err(openssh::Error::RemoteProcessTerminated) => Ok(None),
                    Err(e) => Err(TargetError::Lost {
                        host: self.name.clone(),
                        message: crate::error::chain(&e),
                    }),
                }
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
        async move {
            // Best effort: a master that already died has nothing left to close.
            let _ = self.session.close().await;
        }
        .boxed()
    }
}
