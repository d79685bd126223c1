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

/// One part of a chained script, with its own limits.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub script: &'a str,
    pub limits: Limits,
}

/// How a segment ended, and when it started (UTC ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub exit: Exit,
    pub started_at: i64,
}

/// What a running chain reports as it happens, with the index of the segment it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A line the segment printed.
    Line(String),
    /// The segment ran to its end, with this exit code (the chain goes on if it is 0). A
    /// segment stopped by a limit or a cancel reports nothing: the chain's result says how.
    Ended(Option<i32>),
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
    let segment = Segment {
        script: body,
        limits,
    };
    let mut ended = run_chain(target, &[segment], stdin, cancel, &mut |_, output| {
        if let Output::Line(line) = output {
            on_line(line)
        }
    })
    .await?;
    Ok(ended.pop().map_or(Exit::Code(None), |e| e.exit))
}

/// Runs `segments` one after the other in ONE remote command (one SSH round trip instead of
/// one per segment), stopping at the first that fails. Each segment keeps its own timeouts and
/// its own output: the script prints a marker with a per-run nonce before and after each
/// segment, and the runner switches limits and attribution when it reads one. Returns how each
/// segment that started ended; `on_output` hears each line and each segment's end as they
/// come, with the segment's index.
pub async fn run_chain(
    target: &dyn Target,
    segments: &[Segment<'_>],
    stdin: Option<&[u8]>,
    cancel: &CancellationToken,
    on_output: &mut (dyn FnMut(usize, Output) + Send),
) -> Result<Vec<Ended>, TargetError> {
    let marker = plan::marker();
    let bodies: Vec<&str> = segments.iter().map(|s| s.script).collect();
    let script = plan::with_pid_header(&plan::chain(&marker, &bodies));
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

    let mut current = 0;
    let mut ended: Vec<Ended> = Vec::new();
    let mut started_at = crate::store::now_ms();
    let limits = |i: usize| segments.get(i).map_or(segments[0].limits, |s| s.limits);
    let mut deadline = Instant::now() + limits(0).timeout;
    let mut idle_deadline = Instant::now() + limits(0).idle_timeout;
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
                        idle_deadline = Instant::now() + limits(current).idle_timeout;
                        let line = to_line(&buf);
                        if pid.is_none() && let Some(p) = line.strip_prefix(plan::PID_PREFIX) {
                            pid = p.trim().parse().ok();
                            continue;
                        }
                        let (text, event) = match line.find(&marker) {
                            Some(at) => (&line[..at], Some(&line[at + marker.len()..])),
                            None => (line.as_str(), None),
                        };
                        if event.is_none() || !text.is_empty() {
                            on_output(current, Output::Line(text.to_owned()));
                        }
                        match event.map(|e| e.split_whitespace().collect::<Vec<_>>()).as_deref() {
                            Some(["s", i]) => {
                                current = i.parse().unwrap_or(current);
                                started_at = crate::store::now_ms();
                                deadline = Instant::now() + limits(current).timeout;
                                idle_deadline = Instant::now() + limits(current).idle_timeout;
                            }
                            Some(["e", _, rc]) => {
                                let code = rc.parse().ok();
                                ended.push(Ended {
                                    exit: Exit::Code(code),
                                    started_at,
                                });
                                on_output(current, Output::Ended(code));
                            }
                            _ => {}
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
            () = sleep_until(deadline) => break Some(Exit::TimedOut(limits(current).timeout)),
            () = sleep_until(idle_deadline) => break Some(Exit::Idle(limits(current).idle_timeout)),
            () = cancel.cancelled() => break Some(Exit::Cancelled),
        }
    };
    drop(reader);
    if let Some(exit) = stopped {
        if let Some(pid) = pid {
            kill_group(target, pid).await;
        }
        ended.push(Ended { exit, started_at });
        return Ok(ended);
    }
    let code = match tokio::time::timeout(EXIT_GRACE, process.exit).await {
        Ok(code) => code?,
        Err(_) => {
            return Err(TargetError::Lost {
                host: target.host().to_string(),
                message: "output closed but the process did not exit".into(),
            });
        }
    };
    // The script died inside a segment (killed, or its shell failed) without an end marker.
    if ended.len() <= current && code != Some(0) || ended.is_empty() {
        ended.push(Ended {
            exit: Exit::Code(code),
            started_at,
        });
    }
    Ok(ended)
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
    async fn a_chain_runs_segments_in_one_command_with_their_own_output_and_limits() {
        let quick = Limits {
            timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(20),
        };
        let slow = Limits {
            timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_millis(400),
        };
        let segments = [
            Segment {
                script: "echo one; printf 'no newline'",
                limits: quick,
            },
            Segment {
                script: "wc -c; echo two >&2",
                limits: quick,
            },
            Segment {
                script: "echo three; exit 4",
                limits: quick,
            },
            Segment {
                script: "echo never",
                limits: quick,
            },
        ];
        let mut lines = Vec::new();
        let mut ends = Vec::new();
        let ended = run_chain(
            &Local::new(),
            &segments,
            Some(b"12345"),
            &CancellationToken::new(),
            &mut |i, output| match output {
                Output::Line(l) => lines.push((i, l)),
                // Heard before the next segment's first line.
                Output::Ended(code) => {
                    ends.push((i, code, lines.len()));
                }
            },
        )
        .await
        .unwrap();
        let exits: Vec<_> = ended.iter().map(|e| e.exit.clone()).collect();
        assert_eq!(
            exits,
            [
                Exit::Code(Some(0)),
                Exit::Code(Some(0)),
                Exit::Code(Some(4))
            ]
        );
        let expected = [
            (0, "one"),
            (0, "no newline"),
            (1, "5"),
            (1, "two"),
            (2, "three"),
        ];
        let got: Vec<_> = lines.iter().map(|(i, l)| (*i, l.as_str())).collect();
        assert_eq!(got, expected);
        assert_eq!(ends, [(0, Some(0), 2), (1, Some(0), 4), (2, Some(4), 5)]);

        // The second segment's own idle limit applies to it.
        let segments = [
            Segment {
                script: "sleep 1; echo slow but allowed",
                limits: quick,
            },
            Segment {
                script: "sleep 5",
                limits: slow,
            },
        ];
        let ended = run_chain(
            &Local::new(),
            &segments,
            None,
            &CancellationToken::new(),
            &mut |_, _| {},
        )
        .await
        .unwrap();
        let exits: Vec<_> = ended.iter().map(|e| e.exit.clone()).collect();
        assert_eq!(
            exits,
            [Exit::Code(Some(0)), Exit::Idle(Duration::from_millis(400))]
        );
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
