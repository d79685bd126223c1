//! The apps and environments a command may name, and resolving what the user typed to one of
//! them: `env` or `app/env`, case-insensitively, with a near miss suggested when nothing matches.

use crate::domain::Name;

use super::{Refusal, usage};

/// What the parser may name: the configured apps and their environments. Fields are public so a
/// caller can add environments that exist at run time (ephemeral `demo-xyz` ones) to an app's
/// list before parsing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    pub apps: Vec<KnownApp>,
    /// Which app a bare environment name means when several apps have one of that name (see
    /// [`Known::default_app`]).
    pub configured_default: Option<Name>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownApp {
    pub name: Name,
    pub envs: Vec<Name>,
}

impl Known {
    /// The configured default app, or the only app when there is just one.
    pub fn default_app(&self) -> Option<&Name> {
        match (&self.configured_default, self.apps.as_slice()) {
            (Some(name), _) => Some(name),
            (None, [only]) => Some(&only.name),
            _ => None,
        }
    }

    pub(super) fn app(&self, name: &str) -> Result<&KnownApp, Refusal> {
        self.apps
            .iter()
            .find(|a| a.name.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                let known: Vec<String> = self.apps.iter().map(|a| a.name.to_string()).collect();
                Refusal::UnknownApp {
                    app: name.to_owned(),
                    suggestion: nearest(name, known.iter().map(String::as_str)),
                    known,
                }
            })
    }

    /// Resolves `env` or `app/env`; `app` is an app already named by the command.
    pub(super) fn lane(&self, text: &str, app: Option<&KnownApp>) -> Result<(Name, Name), Refusal> {
        if let Some((app_text, env)) = text.split_once('/') {
            let named = self.app(app_text)?;
            if let Some(app) = app.filter(|a| a.name != named.name) {
                return Err(usage(
                    format!("{text:?} is not an environment of {}", app.name),
                    None,
                ));
            }
            return named.env(env);
        }
        if let Some(app) = app {
            return app.env(text);
        }
        let holders: Vec<&KnownApp> = self.apps.iter().filter(|a| a.has(text)).collect();
        let default = self.default_app();
        match holders.as_slice() {
            [one] => one.env(text),
            [] => {
                let lanes: Vec<String> = self
                    .apps
                    .iter()
                    .flat_map(|a| a.envs.iter().map(move |e| (a, e)))
                    .map(|(a, e)| match self.apps.len() {
                        1 => e.to_string(),
                        _ => format!("{}/{e}", a.name),
                    })
                    .collect();
                let names = self
                    .apps
                    .iter()
                    .flat_map(|a| a.envs.iter().map(Name::as_str));
                Err(Refusal::UnknownEnv {
                    env: text.to_owned(),
                    suggestion: nearest(text, names),
                    known: lanes,
                })
            }
            several => match several.iter().find(|a| Some(&a.name) == default) {
                Some(app) => app.env(text),
                None => Err(Refusal::AmbiguousEnv {
                    env: text.to_owned(),
                    candidates: several
                        .iter()
                        .map(|a| format!("{}/{}", a.name, text.to_ascii_lowercase()))
                        .collect(),
                }),
            },
        }
    }
}

impl KnownApp {
    fn has(&self, env: &str) -> bool {
        self.envs
            .iter()
            .any(|e| e.as_str().eq_ignore_ascii_case(env))
    }

    fn env(&self, env: &str) -> Result<(Name, Name), Refusal> {
        match self
            .envs
            .iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(env))
        {
            Some(e) => Ok((self.name.clone(), e.clone())),
            None => Err(Refusal::UnknownEnv {
                env: format!("{}/{env}", self.name),
                known: self
                    .envs
                    .iter()
                    .map(|e| format!("{}/{e}", self.name))
                    .collect(),
                suggestion: nearest(env, self.envs.iter().map(Name::as_str))
                    .map(|e| format!("{}/{e}", self.name)),
            }),
        }
    }
}

/// The candidate closest to `typed` within an edit distance of 2, ignoring ASCII case.
pub(super) fn nearest<'c>(
    typed: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<String> {
    let typed = typed.to_ascii_lowercase();
    candidates
        .into_iter()
        .filter_map(|c| Some((levenshtein(&typed, c, 2)?, c)))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c.to_owned())
}

/// Edit distance between `a` and `b` (in chars), or `None` when it is over `max`; the length
/// check first keeps a long hostile word from costing a full table.
pub(super) fn levenshtein(a: &str, b: &str, max: usize) -> Option<usize> {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    Some(row[b.len()]).filter(|&d| d <= max)
}
