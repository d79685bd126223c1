//! The text after `/deploy`, parsed into a [`Command`] or a [`Refusal`] that tells the user what
//! to type instead. Pure: it knows the configured apps and environments through [`Known`] and
//! nothing else, so whether a ref exists, a job is cancellable or an environment is locked is
//! decided later, by whoever carries the command out.
//!
//! Words are split on any whitespace (spaces, tabs, newlines), so runs of it between words
//! collapse. Command words, `to`, `for`, app and environment names match case-insensitively
//! (phones capitalise the first word); refs, release ids and reasons (inner spacing included) are
//! kept exactly as typed, hostile or not: they are data, and everything downstream treats them
//! as data. Which apps and environments exist is [`Known`]'s part, in `command/known.rs`.

use std::fmt;
use std::time::Duration;

use crate::domain::{GitRef, Invalid, Name};

mod known;

use known::nearest;
pub use known::{Known, KnownApp};

/// One environment of one app, for commands where the environment is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lane {
    pub app: Name,
    pub env: Name,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Deploy `git_ref`, or the environment's default ref when `None`.
    Deploy {
        app: Name,
        git_ref: Option<GitRef>,
        env: Name,
    },
    /// Roll back to release `to`, or to the release live before the current one.
    Rollback {
        app: Name,
        env: Name,
        to: Option<String>,
    },
    /// One environment, or all of them.
    Status {
        env: Option<Lane>,
    },
    Envs,
    Lock {
        app: Name,
        env: Name,
        reason: String,
        /// Until unlocked when `None`.
        duration: Option<Duration>,
    },
    Unlock {
        app: Name,
        env: Name,
    },
    Cancel {
        job: i64,
    },
    Keep {
        app: Name,
        env: Name,
        duration: Duration,
    },
    History {
        app: Name,
        env: Name,
    },
    Help,
}

/// Why the text is not a command, in words for the person who typed it. User text is shown with
/// `{:?}` so newlines and quotes in it are visible, not acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    UnknownApp {
        app: String,
        known: Vec<String>,
        suggestion: Option<String>,
    },
    UnknownEnv {
        env: String,
        known: Vec<String>,
        suggestion: Option<String>,
    },
    /// A bare environment name that several apps have, none of them the default.
    AmbiguousEnv {
        env: String,
        candidates: Vec<String>,
    },
    BadRef(Invalid),
    BadDuration {
        text: String,
        why: String,
    },
    BadJob {
        text: String,
    },
    /// The words do not fit any command; `problem` says where it went wrong.
    Usage {
        problem: String,
        suggestion: Option<String>,
    },
}

/// What `help` shows, and every [`Refusal::Usage`] ends with.
pub const USAGE: &str = "\
Usage:
  /deploy [APP] REF to ENV            deploy a branch, tag or commit (a leading `deploy` is fine)
  /deploy ENV                         deploy ENV's default ref
  /deploy rollback ENV [to RELEASE]   roll back to RELEASE, or to the previous release
  /deploy status [ENV]
  /deploy envs
  /deploy lock ENV REASON [for DURATION]   quote REASON (\"...\") if it contains `for`
  /deploy unlock ENV
  /deploy cancel JOB                  JOB is 42 or #42
  /deploy keep ENV DURATION           DURATION is like 30m, 2h or 1d
  /deploy history ENV
  /deploy help
ENV is `env`, or `app/env` where several apps have an environment of that name.";

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |names: &[String]| match names {
            [] => "none configured".to_owned(),
            _ => names.join(", "),
        };
        let did_you_mean =
            |f: &mut fmt::Formatter<'_>, suggestion: &Option<String>| match suggestion {
                Some(s) => write!(f, ". Did you mean `{s}`?"),
                None => Ok(()),
            };
        match self {
            Self::UnknownApp {
                app,
                known,
                suggestion,
            } => {
                write!(f, "unknown app {app:?} (known: {})", list(known))?;
                did_you_mean(f, suggestion)
            }
            Self::UnknownEnv {
                env,
                known,
                suggestion,
            } => {
                write!(f, "unknown environment {env:?} (known: {})", list(known))?;
                did_you_mean(f, suggestion)
            }
            Self::AmbiguousEnv { env, candidates } => write!(
                f,
                "several apps have an environment {env:?}: say which, as {}",
                candidates.join(" or ")
            ),
            Self::BadRef(invalid) => write!(f, "bad ref: {invalid}"),
            Self::BadDuration { text, why } => write!(
                f,
                "{text:?} is not a duration ({why}): use one like 30m, 2h or 1d"
            ),
            Self::BadJob { text } => {
                write!(f, "{text:?} is not a job number: use one like 42 or #42")
            }
            Self::Usage {
                problem,
                suggestion,
            } => {
                f.write_str(problem)?;
                did_you_mean(f, suggestion)?;
                write!(f, "\n\n{USAGE}")
            }
        }
    }
}

impl std::error::Error for Refusal {}

/// Parses the text after `/deploy`.
pub fn parse(text: &str, known: &Known) -> Result<Command, Refusal> {
    let all = words(text);
    let Some((first, rest)) = all.split_first() else {
        return Ok(Command::Help);
    };
    let lane = |w: &Word| known.lane(w.text, None);
    let expected = |shape: &str| usage(format!("expected `{shape}`"), None);
    match first.text.to_ascii_lowercase().as_str() {
        "deploy" => deploy(rest, known, false),
        "rollback" => match rest {
            [env] => lane(env).map(|(app, env)| Command::Rollback { app, env, to: None }),
            [env, to, release] if is(to, "to") => lane(env).map(|(app, env)| Command::Rollback {
                app,
                env,
                to: Some(release.text.to_owned()),
            }),
            _ => Err(expected("rollback ENV [to RELEASE]")),
        },
        "status" => match rest {
            [] => Ok(Command::Status { env: None }),
            [env] => lane(env).map(|(app, env)| Command::Status {
                env: Some(Lane { app, env }),
            }),
            _ => Err(expected("status [ENV]")),
        },
        "envs" if rest.is_empty() => Ok(Command::Envs),
        "envs" => Err(expected("envs")),
        "lock" => lock(text, rest, known),
        "unlock" => match rest {
            [env] => lane(env).map(|(app, env)| Command::Unlock { app, env }),
            _ => Err(expected("unlock ENV")),
        },
        "cancel" => match rest {
            [job] => job_number(job.text).map(|job| Command::Cancel { job }),
            _ => Err(expected("cancel JOB")),
        },
        "keep" => match rest {
            [env, first, more @ ..] => {
                let (app, env) = lane(env)?;
                // `keep demo-x for 2h` reads naturally too.
                let spelled = if is(first, "for") { more } else { &rest[1..] };
                let duration = duration(spelled)?;
                Ok(Command::Keep { app, env, duration })
            }
            _ => Err(expected("keep ENV DURATION")),
        },
        "history" => match rest {
            [env] => lane(env).map(|(app, env)| Command::History { app, env }),
            _ => Err(expected("history ENV")),
        },
        "help" => Ok(Command::Help),
        _ => deploy(&all, known, true),
    }
}

/// A whitespace-separated word and where it starts in the text (for a reason that runs to the
/// end of the line).
struct Word<'t> {
    at: usize,
    text: &'t str,
}

fn words(text: &str) -> Vec<Word<'_>> {
    text.split_whitespace()
        .map(|w| Word {
            // `w` is a slice of `text`, so the pointer difference is its byte offset.
            at: w.as_ptr() as usize - text.as_ptr() as usize,
            text: w,
        })
        .collect()
}

fn is(word: &Word, keyword: &str) -> bool {
    word.text.eq_ignore_ascii_case(keyword)
}

fn usage(problem: String, suggestion: Option<String>) -> Refusal {
    Refusal::Usage {
        problem,
        suggestion,
    }
}

const COMMAND_WORDS: [&str; 10] = [
    "deploy", "rollback", "status", "envs", "lock", "unlock", "cancel", "keep", "history", "help",
];

/// `[APP] REF to ENV` or `ENV`. `bare` when no `deploy` word came first: then the first word may
/// also be a mistyped command word, which is the likelier mistake.
fn deploy(words: &[Word], known: &Known, bare: bool) -> Result<Command, Refusal> {
    let command_hint = || {
        words
            .first()
            .filter(|_| bare)
            .and_then(|w| nearest(w.text, COMMAND_WORDS))
    };
    let deploy = |app, git_ref: Option<&Word>, env| {
        let git_ref = git_ref
            .map(|r| GitRef::parse(r.text).map_err(Refusal::BadRef))
            .transpose()?;
        Ok(Command::Deploy { app, git_ref, env })
    };
    match words {
        [env] => match known.lane(env.text, None) {
            Ok((app, env)) => deploy(app, None, env),
            Err(refusal) => match command_hint() {
                Some(cmd) => Err(usage(
                    format!("{:?} is not a command or an environment", env.text),
                    Some(cmd),
                )),
                None => Err(refusal),
            },
        },
        [git_ref, to, env] if is(to, "to") => {
            let (app, env) = known.lane(env.text, None)?;
            deploy(app, Some(git_ref), env)
        }
        [app, git_ref, to, env] if is(to, "to") => {
            let app = known.app(app.text)?;
            let (app, env) = known.lane(env.text, Some(app))?;
            deploy(app, Some(git_ref), env)
        }
        [] => Err(usage("say what to deploy".into(), None)),
        _ => Err(usage(
            "not a command; to deploy, write `[APP] REF to ENV`".into(),
            command_hint(),
        )),
    }
}

/// `lock ENV REASON [for DURATION]`: REASON is quoted, or the rest of the text; there, the last
/// `for` followed by a word starting with a digit starts the duration (quote a reason to keep
/// such a `for` in it).
fn lock(text: &str, rest: &[Word], known: &Known) -> Result<Command, Refusal> {
    let [env, reason_start, ..] = rest else {
        return Err(usage(
            "say why: `lock ENV REASON [for DURATION]`".into(),
            None,
        ));
    };
    let (app, env) = known.lane(env.text, None)?;
    let line = &text[reason_start.at..];
    let (reason, duration) = match quoted(line)? {
        Some((reason, after)) => match words(after).split_first() {
            None => (reason, None),
            Some((f, d)) if is(f, "for") && !d.is_empty() => (reason, Some(duration(d)?)),
            Some(_) => {
                return Err(usage(
                    "after a quoted reason only `for DURATION` may follow".into(),
                    None,
                ));
            }
        },
        None => {
            let ws = &rest[1..];
            let split = ws.iter().rposition(|w| is(w, "for")).filter(|&i| {
                ws.get(i + 1)
                    .is_some_and(|w| w.text.starts_with(|c: char| c.is_ascii_digit()))
            });
            let (reason, duration_words) = match split {
                Some(i) => (&ws[..i], Some(&ws[i + 1..])),
                None => (ws, None),
            };
            // The text from the reason's first word to its last, as typed: inner spacing and
            // newlines are the user's.
            let reason = match (reason.first(), reason.last()) {
                (Some(first), Some(last)) => &text[first.at..last.at + last.text.len()],
                _ => "",
            };
            (reason, duration_words.map(duration).transpose()?)
        }
    };
    if reason.trim().is_empty() {
        return Err(usage(
            "say why: `lock ENV REASON [for DURATION]`".into(),
            None,
        ));
    }
    Ok(Command::Lock {
        app,
        env,
        reason: reason.to_owned(),
        duration,
    })
}

/// `Some((inside, after))` when `line` starts with a quote. Typed (`"`, `'`) and smart quotes
/// (which Slack clients substitute) are one family each; the last quote of the opening family
/// closes, so an apostrophe inside (`'don't deploy'`) stays part of the reason.
fn quoted(line: &str) -> Result<Option<(&str, &str)>, Refusal> {
    const FAMILIES: [&[char]; 2] = [&['"', '“', '”'], &['\'', '‘', '’']];
    let Some(open) = line.chars().next() else {
        return Ok(None);
    };
    let Some(family) = FAMILIES.iter().find(|f| f.contains(&open)) else {
        return Ok(None);
    };
    let inner = &line[open.len_utf8()..];
    let close = inner.rfind(*family).ok_or_else(|| {
        usage(
            format!("the {open} that opens the reason is never closed"),
            None,
        )
    })?;
    let close_len = inner[close..].chars().next().map_or(1, char::len_utf8);
    Ok(Some((&inner[..close], &inner[close + close_len..])))
}

fn duration(words: &[Word]) -> Result<Duration, Refusal> {
    let text = words.iter().map(|w| w.text).collect::<Vec<_>>().join(" ");
    let bad = |why: String| Refusal::BadDuration {
        text: text.clone(),
        why,
    };
    match humantime::parse_duration(&text) {
        Ok(d) if d.is_zero() => Err(bad("it must be longer than zero".into())),
        Ok(d) => Ok(d),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// `42` or `#42`: a positive job id.
fn job_number(text: &str) -> Result<i64, Refusal> {
    let digits = text.strip_prefix('#').unwrap_or(text);
    Some(digits)
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<i64>().ok())
        .filter(|&job| job > 0)
        .ok_or_else(|| Refusal::BadJob {
            text: text.to_owned(),
        })
}

#[cfg(test)]
mod tests;
