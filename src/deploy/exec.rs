//! Runs one script on a target with the limits a deploy needs: an overall timeout, a no-output
//! timeout, cancellation, and output captured line by line. Identical for every target.
//!
//! Killing: every script starts by printing its shell's pid, which is also its process group
//! (sshd makes each session's command a session leader; the local target starts a new group).
//! On a timeout we signal the whole group through a second command, so the step's children die
//! too, instead of only dropping our end of the channel and leaving them running.

use std::time::Duration;

use futures::FutureExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::plan;
use super::target::{Target, TargetError};

/// Longest line kept in the log; longer ones are cut with a marker.
const MAX_LINE: usize = 8 * 1024;
/// How long to wait for a process to report its exit after its output closed or it was killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this code (`None`: killed by a signal).
    Code(Option<i32>),
    TimedOut(Duration),
    Idle(Duration),
    Cancelled,
}

impl Exit {
    pub fn success(&self) -> bool {
        *self == Exit::Code(Some(0))
    }

    /// The `step_results.status` word.
    pub fn status(&self) -> &'static str {
        match self {
            Exit::Code(Some(0)) => "ok",
            Exit::Code(_) => "failed",
            Exit::TimedOut(_) => "timed_out",
            Exit::Idle(_) => "idle_timeout",
            Exit::Cancelled => "cancelled",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Exit::Code(Some(code)) => format!("exit code {code}"),
            Exit::Code(None) => "killed by a signal".into(),
            Exit::TimedOut(d) => format!("timed out after {}", humantime::format_duration(*d)),
            Exit::Idle(d) => format!("no output for {}", humantime::format_duration(*d)),
            Exit::Cancelled => "cancelled".into(),
        }
    }
}

/// Runs `body` on `target`, feeding `stdin` to it and every output line to `on_line`.
pub async fn run(
    target: &dyn Target,
    body: &str,
    stdin: Option<&[u8]>,
    limits: Limits,
    cancel: &CancellationToken,
    on_line: &mut (dyn FnMut(String) + Send),
) -> Result<Exit, TargetError> {
    let script = plan::with_pid_header(body);
    let process = target.spawn(&script, stdin.is_some()).await?;
    let mut reader = BufReader::new(process.stdout);
    let mut writer = process.stdin;
    let feed = async {
        if let (Some(w), Some(data)) = (writer.as_mut(), stdin) {
            // A script that exits without reading all its input closes the pipe: that is its
            // exit code's business, not an error here.
            let _ = w.write_all(data).await;
            let _ = w.shutdown().await;
        }
        drop(writer);
    }
    .fuse();
    let mut feed = std::pin::pin!(feed);

    let started = Instant::now();
    let deadline = started + limits.timeout;
    let mut idle_deadline = started + limits.idle_timeout;
    let mut pid: Option<u32> = None;
    let mut buf = Vec::new();
    let stopped = loop {
        buf.clear();
        tokio::select! {
            () = &mut feed => continue,
            read = reader.read_until(b'\n', &mut buf) => {
                match read {
                    Ok(0) => break None,
                    Ok(_) => {
                        idle_deadline = Instant::now() + limits.idle_timeout;
                        let line = to_line(&buf);
                        match (pid, line.strip_prefix(plan::PID_PREFIX)) {
                            (None, Some(p)) => pid = p.trim().parse().ok(),
                            _ => on_line(line),
                        }
                    }
                    Err(e) => {
                        return Err(TargetError::Lost {
                            host: target.host().to_string(),
                            message: e.to_string(),
                        })
                    }
                }
            }
            () = sleep_until(deadline) => break Some(Exit::TimedOut(limits.timeout)),
            () = sleep_until(idle_deadline) => break Some(Exit::Idle(limits.idle_timeout)),
            () = cancel.cancelled() => break Some(Exit::Cancelled),
        }
    };
    drop(reader);
    if let Some(exit) = stopped {
        if let Some(pid) = pid {
            kill_group(target, pid).await;
        }
        return Ok(exit);
    }
    match tokio::time::timeout(EXIT_GRACE, process.exit).await {
        Ok(code) => Ok(Exit::Code(code?)),
        Err(_) => Err(TargetError::Lost {
            host: target.host().to_string(),
            message: "output closed but the process did not exit".into(),
        }),
    }
}

async fn kill_group(target: &dyn Target, pid: u32) {
    // Best effort: if this fails too the connection is gone, and the job fails anyway.
    if let Ok(process) = target.spawn(&plan::kill_group(pid), false).await {
        let _ = tokio::time::timeout(EXIT_GRACE, process.exit).await;
    }
}

fn to_line(raw: &[u8]) -> String {
    let mut end = raw.len();
    while end > 0 && (raw[end - 1] == b'\n' || raw[end - 1] == b'\r') {
        end -= 1;
    }
    let mut line = String::from_utf8_lossy(&raw[..end]).into_owned();
    if line.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str(" [line truncated]");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::target::Local;

    const QUICK: Limits = Limits {
        timeout: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(20),
    };

    async fn run_local(body: &str, stdin: Option<&[u8]>, limits: Limits) -> (Exit, Vec<String>) {
        let mut lines = Vec::new();
        let exit = run(
            &Local::new(),
            body,
            stdin,
            limits,
            &CancellationToken::new(),
            &mut |l| lines.push(l),
        )
        .await
        .unwrap();
        (exit, lines)
    }

    #[tokio::test]
    async fn captures_stdout_and_stderr_lines_and_the_exit_code() {
        let (exit, lines) = run_local(
            "echo one; echo two >&2; printf 'no newline'; exit 3",
            None,
            QUICK,
        )
        .await;
        assert_eq!(exit, Exit::Code(Some(3)));
        assert_eq!(lines, ["one", "two", "no newline"]);
    }

    #[tokio::test]
    async fn feeds_stdin() {
        let (exit, lines) = run_local("wc -c", Some(&[b'x'; 100_000]), QUICK).await;
        assert!(exit.success());
        assert_eq!(lines, ["100000"]);
    }

    #[tokio::test]
    async fn invalid_utf8_and_long_lines_are_kept_safely() {
        let (_, lines) = run_local(
            "printf '\\377ok\\n'; head -c 20000 /dev/zero | tr '\\0' a; echo",
            None,
            QUICK,
        )
        .await;
        assert_eq!(lines[0], "\u{fffd}ok");
        assert!(lines[1].ends_with("[line truncated]"));
        assert!(lines[1].len() < 9 * 1024);
    }

    #[tokio::test]
    async fn a_silent_step_hits_the_idle_timeout_and_its_children_die() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let body = format!(
            "echo started; (sleep 2; touch {}) & sleep 30",
            crate::deploy::shell::quote(marker.to_str().unwrap())
        );
        let limits = Limits {
            timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_millis(500),
        };
        let (exit, lines) = run_local(&body, None, limits).await;
        assert_eq!(exit, Exit::Idle(Duration::from_millis(500)));
        assert_eq!(lines, ["started"]);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            !marker.exists(),
            "the step's background child was not killed"
        );
    }

    #[tokio::test]
    async fn a_chatty_step_still_hits_the_overall_timeout() {
        let limits = Limits {
            timeout: Duration::from_millis(600),
            idle_timeout: Duration::from_secs(30),
        };
        let (exit, lines) =
            run_local("while true; do echo tick; sleep 0.1; done", None, limits).await;
        assert_eq!(exit, Exit::TimedOut(Duration::from_millis(600)));
        assert!(lines.len() >= 3);
    }

    #[tokio::test]
    async fn cancellation_stops_the_step() {
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.cancel();
        });
        let exit = run(&Local::new(), "sleep 30", None, QUICK, &cancel, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(exit, Exit::Cancelled);
    }
}
