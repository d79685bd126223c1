//! Who is looking: a login with a configured token becomes a signed cookie; actions carry a
//! CSRF token derived from it; without configured users, only loopback peers get in.
//!
//! Stateless on purpose: the cookie is `name.expires.mac`, an HMAC-SHA256 under a key derived
//! from the config's secrets (the webhook secret and every user's name and token), so any
//! replica with the same config accepts it, a restart keeps people logged in, and changing any
//! user's token (or removing the user) ends every session. The CSRF token is the MAC of the
//! cookie under the same key with another label: a form from another site cannot know it, and
//! `SameSite=Strict` keeps the browser from sending the cookie with such a form anyway.
//! Every comparison of a secret is constant-time (`Mac::verify_slice`, or digests compared
//! with `subtle`).

use std::net::IpAddr;

use axum::http::HeaderMap;

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::actions::Actor;
use crate::config::{Config, DashboardUser};
use crate::signature::{hex_mac, verify_mac};

/// The cookie's name.
pub const COOKIE: &str = "slipway_session";

/// Who a request comes from.
#[derive(Debug, Clone)]
pub enum Viewer {
    /// No users are configured: a loopback peer who may look but not act.
    Local,
    /// A logged-in user, with the session's CSRF token for their forms.
    User {
        name: String,
        slack_user: String,
        csrf: String,
    },
}

impl Viewer {
    /// The person acting, for [`crate::actions`]; `None` when this viewer may only look.
    pub fn actor(&self) -> Option<Actor<'_>> {
        match self {
            Self::Local => None,
            Self::User {
                name, slack_user, ..
            } => Some(Actor {
                id: slack_user,
                name,
                source: "dashboard",
            }),
        }
    }

    pub fn csrf(&self) -> Option<&str> {
        match self {
            Self::Local => None,
            Self::User { csrf, .. } => Some(csrf),
        }
    }

    /// Whether a form's `given` CSRF token is this session's (constant-time).
    pub fn csrf_ok(&self, given: &str) -> bool {
        self.csrf().is_some_and(|expected| {
            expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
        })
    }
}

/// The key sessions and CSRF tokens are signed with.
pub struct Keys {
    key: String,
}

impl Keys {
    pub fn new(config: &Config) -> Self {
        let mut parts: Vec<&[u8]> = vec![b"slipway dashboard sessions v1"];
        for user in &config.dashboard.users {
            parts.extend([
                b"\0".as_slice(),
                user.name.as_bytes(),
                b"\0",
                user.token.expose_secret().as_bytes(),
            ]);
        }
        let key = hex_mac(
            config.github.webhook_secret.expose_secret().as_bytes(),
            &parts,
        );
        Self { key }
    }

    /// The cookie value of a session of `name` that ends at `expires` (ms since the epoch).
    pub fn session(&self, name: &str, expires: i64) -> String {
        let expires = expires.to_string();
        let mac = hex_mac(
            self.key.as_bytes(),
            &[b"session\0", name.as_bytes(), b"\0", expires.as_bytes()],
        );
        format!("{name}.{expires}.{mac}")
    }

    /// The user a cookie value names, if its MAC is right, it has not expired at `now` and the
    /// user is still configured.
    pub fn verify<'c>(
        &self,
        config: &'c Config,
        value: &str,
        now: i64,
    ) -> Option<&'c DashboardUser> {
        let mut parts = value.rsplitn(3, '.');
        let (mac, expires, name) = (parts.next()?, parts.next()?, parts.next()?);
        let digest = hex::decode(mac).ok()?;
        verify_mac(
            self.key.as_bytes(),
            &[b"session\0", name.as_bytes(), b"\0", expires.as_bytes()],
            &digest,
        )
        .ok()?;
        if expires.parse::<i64>().ok()? <= now {
            return None;
        }
        config.dashboard.users.iter().find(|u| u.name == name)
    }

    /// The CSRF token of the session whose cookie value is `session`.
    pub fn csrf(&self, session: &str) -> String {
        hex_mac(self.key.as_bytes(), &[b"csrf\0", session.as_bytes()])
    }
}

/// The user whose token `given` is. Every user's token is compared, each by its SHA-256 digest
/// in constant time, so neither the time taken nor a length difference tells which prefix or
/// length was right.
pub fn login<'c>(config: &'c Config, given: &str) -> Option<&'c DashboardUser> {
    let given = Sha256::digest(given.as_bytes());
    let mut found = None;
    for user in &config.dashboard.users {
        let expected = Sha256::digest(user.token.expose_secret().as_bytes());
        if bool::from(given.ct_eq(&expected)) {
            found = Some(user);
        }
    }
    found
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether a request may see the dashboard when no users are configured: it comes from a
/// loopback peer (also an IPv4 loopback address mapped into IPv6) and was not forwarded. A
/// reverse proxy on the same machine connects from loopback too, for whoever it serves; the
/// headers proxies add (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`) give it away. A proxy
/// that adds none of them is not detected: see `docs/production.md`.
pub fn local_request(peer: Option<IpAddr>, headers: &HeaderMap) -> bool {
    let forwarded = ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|name| headers.contains_key(*name));
    !forwarded && peer.is_some_and(local_peer)
}

fn local_peer(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(users: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipway.toml");
        std::fs::write(
            &path,
            format!("[github]\nwebhook_secret = \"session-test-secret\"\n[dashboard]\nusers = [{users}]\n"),
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        (dir, config)
    }

    const USERS: &str = "{ name = \"alice\", slack_user = \"U0ALICE\", token = \"alice-token-0123456789\" }, \
        { name = \"bob.b\", slack_user = \"U0BOB\", token = \"bob-token-0123456789ab\" }";

    #[test]
    fn a_session_names_its_user_until_it_expires() {
        let (_dir, c) = config(USERS);
        let keys = Keys::new(&c);
        let cookie = keys.session("bob.b", 2_000);
        assert_eq!(keys.verify(&c, &cookie, 1_999).unwrap().name, "bob.b");
        assert!(keys.verify(&c, &cookie, 2_000).is_none(), "expired");
        for forged in [
            cookie.replace("bob.b", "alice"),
            cookie.replace(".2000.", ".9000."),
            format!("{}0", &cookie[..cookie.len() - 1]),
            cookie[..cookie.len() - 2].to_owned(),
            "alice.9000".to_owned(),
            String::new(),
        ] {
            assert!(keys.verify(&c, &forged, 1_000).is_none(), "{forged}");
        }
        // A session of a user no longer configured, or under another config's key, is refused.
        let (_dir, other) =
            config(&USERS.replace("bob-token-0123456789ab", "bob-token-rotated-9876"));
        assert!(Keys::new(&other).verify(&other, &cookie, 1_000).is_none());
        let gone = keys.session("carol", 2_000);
        assert!(keys.verify(&c, &gone, 1_000).is_none());
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let (_dir, c) = config(USERS);
        let keys = Keys::new(&c);
        let (a, b) = (keys.session("alice", 5), keys.session("alice", 6));
        let viewer = |session: &str| Viewer::User {
            name: "alice".into(),
            slack_user: "U0ALICE".into(),
            csrf: keys.csrf(session),
        };
        let token = keys.csrf(&a);
        assert_ne!(token, keys.csrf(&b));
        assert!(viewer(&a).csrf_ok(&token));
        assert!(!viewer(&b).csrf_ok(&token));
        assert!(!viewer(&a).csrf_ok(""));
        assert!(!viewer(&a).csrf_ok(&token[1..]));
        assert!(
            !Viewer::Local.csrf_ok(""),
            "a read-only viewer has no token to match"
        );
    }

    #[test]
    fn a_login_finds_the_user_by_token_only() {
        let (_dir, c) = config(USERS);
        assert_eq!(login(&c, "bob-token-0123456789ab").unwrap().name, "bob.b");
        assert_eq!(
            login(&c, "alice-token-0123456789").unwrap().slack_user,
            "U0ALICE"
        );
        for wrong in [
            "",
            "alice",
            "alice-token-0123456789 ",
            "bob-token-0123456789aB",
        ] {
            assert!(login(&c, wrong).is_none(), "{wrong}");
        }
    }

    #[test]
    fn cookies_and_peers() {
        let header = "a=1; slipway_session=x.1.ff;b=2";
        assert_eq!(cookie(header, COOKIE), Some("x.1.ff"));
        assert_eq!(cookie(header, "b"), Some("2"));
        assert_eq!(cookie(header, "slipway"), None);
        let none = HeaderMap::new();
        for local in ["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"] {
            assert!(
                local_request(Some(local.parse().unwrap()), &none),
                "{local}"
            );
        }
        for remote in [
            "10.0.0.1",
            "0.0.0.0",
            "::",
            "::ffff:10.0.0.1",
            "192.168.1.5",
        ] {
            assert!(
                !local_request(Some(remote.parse().unwrap()), &none),
                "{remote}"
            );
        }
        assert!(!local_request(None, &none), "no known peer: refused");
        for header in ["Forwarded", "X-Forwarded-For", "x-real-ip"] {
            let mut proxied = HeaderMap::new();
            proxied.insert(header, "203.0.113.9".parse().unwrap());
            assert!(
                !local_request(Some("127.0.0.1".parse().unwrap()), &proxied),
                "{header}"
            );
        }
    }
}
