//! Validated domain values. Once a value has one of these types it is valid everywhere, so the
//! rest of the code never re-checks (and never forgets to check) a name from outside.

use std::fmt;

use serde::Serialize;

/// Why a value was refused, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// An app or environment name from config: `[a-z0-9][a-z0-9_-]{0,62}`.
    Name
);

impl Name {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let ok_first = value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let ok_rest = value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok_first && ok_rest && value.len() <= 63 {
            Ok(Self(value.to_owned()))
        } else {
            Err(Invalid(format!(
                "{value:?} is not a valid name: use 1-63 of a-z, 0-9, '-' and '_', starting with a letter or digit"
            )))
        }
    }
}

string_newtype!(
    /// A full commit id: 40 (SHA-1) or 64 (SHA-256) lower-case hex digits.
    Sha
);

impl Sha {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let hex = value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if hex && (value.len() == 40 || value.len() == 64) {
            Ok(Self(value.to_owned()))
        } else {
            Err(Invalid(format!("{value:?} is not a full commit id")))
        }
    }

    /// The all-zero id GitHub sends as `after` when a ref is deleted.
    pub fn is_null(&self) -> bool {
        self.0.bytes().all(|b| b == b'0')
    }

    pub fn short(&self) -> &str {
        &self.0[..8]
    }
}

string_newtype!(
    /// A git ref as pushed (`main`, `demo/$(id)`, `v1.4.0`). It is user input: valid per git's
    /// rules but hostile-capable, so it only ever reaches a shell through `deploy::shell::quote`.
    GitRef
);

impl GitRef {
    /// Longest ref we accept; git itself has no hard limit but file systems cap a component at 255.
    pub const MAX_LEN: usize = 1024;

    /// Accepts what git accepts for a ref name (`git check-ref-format`), minus nothing: the checks
    /// here are the ones that matter for safety and storage (no NUL or other ASCII control
    /// characters, no empty name, bounded length); the rest is git's business.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(Invalid(format!(
                "a ref name must be 1-{} bytes long",
                Self::MAX_LEN
            )));
        }
        if value.chars().any(|c| c.is_ascii_control()) {
            return Err(Invalid(
                "a ref name may not contain control characters".into(),
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

string_newtype!(
    /// A release directory name: `<UTC yyyymmddHHMMSS>-<job id>`. Made by us, never from input;
    /// sorting release ids as strings sorts them by the time their job was queued.
    ReleaseId
);

impl ReleaseId {
    pub fn new(queued_at: chrono::DateTime<chrono::Utc>, job_id: i64) -> Self {
        Self(format!("{}-{job_id}", queued_at.format("%Y%m%d%H%M%S")))
    }

    /// Wraps a release id read back from our own database.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }
}

/// Where an environment deploys: this machine, or one SSH host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostSpec {
    Local,
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
    },
}

impl HostSpec {
    /// Parses `local`, `host`, `user@host`, `user@host:port` or `user@[v6addr]:port`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        if value == "local" {
            return Ok(Self::Local);
        }
        let bad = |why: &str| Invalid(format!("{value:?} is not a host: {why}"));
        let (user, rest) = match value.split_once('@') {
            Some((user, rest)) => (Some(user), rest),
            None => (None, value),
        };
        if let Some(user) = user {
            let ok = !user.is_empty()
                && !user.starts_with('-')
                && user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !ok {
                return Err(bad(
                    "the user name must be letters, digits, '.', '_' or '-'",
                ));
            }
        }
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (addr, after) = inner.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("expected ':port' after ']'"))?,
                ),
            };
            (addr, port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("bad port"))
            })
            .transpose()?;
        let host_ok = !host.is_empty()
            && !host.starts_with('-')
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
        if !host_ok {
            return Err(bad(
                "the host name must be letters, digits, '.', '-', '_' or an IP address",
            ));
        }
        Ok(Self::Ssh {
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local => f.write_str("local"),
            Self::Ssh { user, host, port } => {
                if let Some(user) = user {
                    write!(f, "{user}@")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    f.write_str(host)?;
                }
                if let Some(port) = port {
                    write!(f, ":{port}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(Name::parse("staging").is_ok());
        assert!(Name::parse("shop-2_eu").is_ok());
        for bad in ["", "Staging", "-x", "a b", "a/b", &"x".repeat(64)] {
            assert!(Name::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shas() {
        let sha = Sha::parse("199eddf46df50de8d02e99bf1c5fdb4101338224").unwrap();
        assert_eq!(sha.short(), "199eddf4");
        assert!(!sha.is_null());
        assert!(Sha::parse(&"0".repeat(40)).unwrap().is_null());
        for bad in ["", "abc", &"A".repeat(40), &"g".repeat(40)] {
            assert!(Sha::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refs_keep_hostile_text_but_refuse_control_characters() {
        assert_eq!(GitRef::parse("demo/$(id)").unwrap().as_str(), "demo/$(id)");
        assert!(GitRef::parse("a\nb").is_err());
        assert!(GitRef::parse("a\0b").is_err());
        assert!(GitRef::parse("").is_err());
        assert!(GitRef::parse(&"x".repeat(GitRef::MAX_LEN + 1)).is_err());
    }

    #[test]
    fn release_ids_sort_by_queue_time() {
        let t1 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let t2 = chrono::DateTime::from_timestamp(1_700_000_001, 0).unwrap();
        let a = ReleaseId::new(t1, 99);
        let b = ReleaseId::new(t2, 100);
        assert_eq!(a.as_str(), "20231114221320-99");
        assert!(a < b);
    }

    #[test]
    fn hosts() {
        assert_eq!(HostSpec::parse("local").unwrap(), HostSpec::Local);
        let cases = [
            ("deploy@10.0.0.5", Some("deploy"), "10.0.0.5", None),
            (
                "deploy@10.0.0.6:2222",
                Some("deploy"),
                "10.0.0.6",
                Some(2222),
            ),
            ("web1.example.com", None, "web1.example.com", None),
            ("root@[::1]:22", Some("root"), "::1", Some(22)),
        ];
        for (text, user, host, port) in cases {
            let parsed = HostSpec::parse(text).unwrap();
            assert_eq!(
                parsed,
                HostSpec::Ssh {
                    user: user.map(str::to_owned),
                    host: host.to_owned(),
                    port
                }
            );
            assert_eq!(parsed.to_string(), text);
        }
        for bad in [
            "",
            "-oProxyCommand=x",
            "a@-x",
            "a@b:0",
            "a@b:99999",
            "a b",
            "a@[::1",
            "u;id@h",
        ] {
            assert!(HostSpec::parse(bad).is_err(), "{bad:?}");
        }
    }
}
