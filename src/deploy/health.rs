//! Health checks: HTTP GET a host's app port and judge the answer, from the bot or from the host
//! itself (`curl` over the SSH connection, for ports only the host can reach).

use std::fmt;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::exec::{self, Limits};
use super::{Failure, Host, Run, plan};
use crate::config::{Health, HealthFrom};
use crate::domain::HostSpec;

/// Longest piece of a failing answer's body kept in the job's result.
const EXCERPT: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Unhealthy(Unhealthy),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    pub url: String,
    pub status: Option<u16>,
    pub body: String,
    pub error: Option<String>,
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "health check GET {} failed: ", self.url)?;
        match (&self.error, self.status) {
            (Some(error), _) => write!(f, "{error}"),
            (None, Some(status)) => write!(f, "status {status}, body {:?}", self.body),
            (None, None) => write!(f, "no answer"),
        }
    }
}

/// Judges one answer against the check's expectations.
pub fn judge(check: &Health, url: &str, status: u16, body: &str) -> Verdict {
    let status_ok = match check.status {
        Some(expected) => status == expected,
        None => (200..300).contains(&status),
    };
    let body_ok = check.body.as_deref().is_none_or(|want| body.contains(want));
    if status_ok && body_ok {
        Verdict::Healthy
    } else {
        Verdict::Unhealthy(Unhealthy {
            url: url.to_owned(),
            status: Some(status),
            body: excerpt(body),
            error: (!body_ok && status_ok).then(|| {
                format!(
                    "body does not contain {:?}",
                    check.body.as_deref().unwrap_or("")
                )
            }),
        })
    }
}

fn excerpt(body: &str) -> String {
    let mut end = body.len().min(EXCERPT);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    body[..end].to_owned()
}

/// The address in a health URL: the host's SSH address (a host can reach its own address, and
/// the bot can reach it when checking from the bot); the local target is this machine.
fn address(host: &HostSpec) -> String {
    match host {
        HostSpec::Ssh { host, .. } if host.contains(':') => format!("[{host}]"),
        HostSpec::Ssh { host, .. } => host.clone(),
        HostSpec::Local => "127.0.0.1".into(),
    }
}

impl Run<'_> {
    /// Checks `host` on `port` until it is healthy or the retries run out; with `observe`, keeps
    /// checking for that long afterwards and fails on the first bad answer. Without a configured
    /// check every host is healthy.
    pub async fn health(
        &self,
        host: &Host,
        port: u16,
        observe: Option<Duration>,
    ) -> Result<(), Failure> {
        match self.verdict(host, port, observe).await {
            Verdict::Healthy => Ok(()),
            Verdict::Unhealthy(why) => Err(Failure {
                host: Some(host.name.clone()),
                step: Some("health".into()),
                reason: why.to_string(),
                log_tail: self.journal().tail(&host.name),
                rolled_back: Vec::new(),
            }),
        }
    }

    async fn verdict(&self, host: &Host, port: u16, observe: Option<Duration>) -> Verdict {
        let Some(check) = &self.env.health else {
            return Verdict::Healthy;
        };
        let url = format!("http://{}:{port}{}", address(&host.spec), check.path);
        let mut verdict = Verdict::Healthy;
        for attempt in 1..=check.retries {
            verdict = self.probe(host, check, &url).await;
            if verdict == Verdict::Healthy {
                break;
            }
            if attempt < check.retries {
                tokio::time::sleep(check.interval).await;
            }
        }
        if let (Verdict::Healthy, Some(window)) = (&verdict, observe) {
            let until = Instant::now() + window;
            while Instant::now() < until {
                tokio::time::sleep(check.interval.min(until - Instant::now())).await;
                verdict = self.probe(host, check, &url).await;
                if verdict != Verdict::Healthy {
                    break;
                }
            }
        }
        let note = match &verdict {
            Verdict::Healthy => format!("slipway: healthy: GET {url}"),
            Verdict::Unhealthy(why) => format!("slipway: {why}"),
        };
        self.journal().line(&host.name, "health", &note);
        verdict
    }

    async fn probe(&self, host: &Host, check: &Health, url: &str) -> Verdict {
        let unreachable = |error: String| {
            Verdict::Unhealthy(Unhealthy {
                url: url.to_owned(),
                status: None,
                body: String::new(),
                error: Some(error),
            })
        };
        match check.from {
            HealthFrom::Bot => {
                let answer = self.http.get(url).timeout(check.timeout).send().await;
                match answer {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        let body = res.text().await.unwrap_or_default();
                        judge(check, url, status, &body)
                    }
                    Err(e) => unreachable(crate::error::chain(&e)),
                }
            }
            HealthFrom::Host => {
                let script = plan::probe(url, check.timeout.as_secs().max(1));
                let mut lines = Vec::new();
                let limits = Limits {
                    timeout: check.timeout + Duration::from_secs(5),
                    idle_timeout: check.timeout + Duration::from_secs(5),
                };
                let never = CancellationToken::new();
                let exit = exec::run(
                    host.target.as_ref(),
                    &script,
                    None,
                    limits,
                    &never,
                    &mut |l| lines.push(l),
                )
                .await;
                let status = lines
                    .iter()
                    .rev()
                    .find_map(|l| l.strip_prefix("slipway-status:"))
                    .and_then(|s| s.trim().parse::<u16>().ok())
                    .filter(|s| *s != 0);
                let body: Vec<_> = lines
                    .iter()
                    .filter(|l| !l.starts_with("slipway-status:"))
                    .cloned()
                    .collect();
                match (exit, status) {
                    (_, Some(status)) => judge(check, url, status, &body.join("\n")),
                    (Ok(_), None) => unreachable(body.join(" ")),
                    (Err(e), None) => unreachable(e.to_string()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: Option<u16>, body: Option<&str>) -> Health {
        Health {
            path: "/".into(),
            port: Some(1),
            status,
            body: body.map(str::to_owned),
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
            retries: 1,
            from: HealthFrom::Bot,
        }
    }

    #[test]
    fn judges_status_and_body() {
        assert_eq!(judge(&check(None, None), "u", 204, ""), Verdict::Healthy);
        assert_eq!(
            judge(&check(Some(200), Some("ok")), "u", 200, "all ok"),
            Verdict::Healthy
        );
        let Verdict::Unhealthy(bad) = judge(&check(None, None), "http://h:1/", 503, "down") else {
            panic!("503 is unhealthy")
        };
        assert_eq!(
            bad.to_string(),
            "health check GET http://h:1/ failed: status 503, body \"down\""
        );
        let Verdict::Unhealthy(bad) =
            judge(&check(None, Some("ready")), "u", 200, &"x".repeat(500))
        else {
            panic!("a missing substring is unhealthy")
        };
        assert_eq!(bad.body.len(), EXCERPT);
        assert!(bad.to_string().contains("body does not contain \"ready\""));
    }
}
