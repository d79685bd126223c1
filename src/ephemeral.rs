//! Ephemeral environments: what a branch's environment is called and where it is reached.
//! Pure: the lifecycle's I/O lives in the queue (creation with the push), the worker (deploy,
//! teardown) and the scheduled jobs (cleanup, reconcile).
//!
//! A branch `demo/Feature_X` matching `[apps.shop.ephemeral.demo]` (`branches = "demo/*"`,
//! `hostname = "demo-{slug}.app.example.com"`) becomes the environment `demo-feature-x-<hash>`
//! at `demo-feature-x-<hash>.app.example.com`. The slug is the branch after the pattern's
//! literal prefix, as a DNS label: lower case, runs of anything else as one `-`. A branch that is
//! already a clean label keeps it as is; any other gets a short hash of the full branch name
//! appended, so two branches never share a slug by cleaning (`demo/feature-x` stays
//! `feature-x`; `demo/Feature_X` becomes `feature-x-1a2b3c`). The raw branch text never reaches a
//! name, a path or a hostname.

use sha2::{Digest, Sha256};

use crate::config::{App, Ephemeral};
use crate::domain::{Invalid, Name};

/// The longest a DNS label may be.
const LABEL_MAX: usize = 63;
/// Hex digits of the branch hash appended to a cleaned slug.
const HASH_LEN: usize = 6;

/// A branch's environment: its names, derived from the branch alone (stable across pushes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub template: Name,
    /// `<template>-<slug>`: the jobs' env.
    pub env: Name,
    pub slug: String,
    pub hostname: String,
}

/// The template of `app` whose branch pattern matches `branch`, if any (the first, by name).
pub fn template_for<'a>(app: &'a App, branch: &str) -> Option<&'a Ephemeral> {
    app.ephemeral.values().find(|e| e.branches.is_match(branch))
}

/// Names the environment of `branch`, or says why the branch cannot have one.
pub fn identify(template: &Ephemeral, branch: &str) -> Result<Identity, Invalid> {
    let rest = branch.strip_prefix(&template.prefix).unwrap_or(branch);
    let mut cleaned = String::with_capacity(rest.len());
    for c in rest.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            cleaned.push(c);
        } else if !cleaned.is_empty() && !cleaned.ends_with('-') {
            cleaned.push('-');
        }
    }
    let cleaned = cleaned.trim_end_matches('-');
    if cleaned.is_empty() {
        return Err(Invalid(format!(
            "branch {branch:?} has no letters or digits after {:?} to name an environment after",
            template.prefix
        )));
    }
    let first_label = template.hostname.split('.').next().unwrap_or_default();
    let room = (LABEL_MAX - (first_label.len() - "{slug}".len()))
        .min(LABEL_MAX - template.name.as_str().len() - 1);
    let slug = if cleaned == rest && cleaned.len() <= room {
        cleaned.to_owned()
    } else {
        let hash = hex::encode(Sha256::digest(branch.as_bytes()));
        let keep = room.saturating_sub(HASH_LEN + 1).min(cleaned.len());
        let head = cleaned[..keep].trim_end_matches('-');
        if head.is_empty() {
            hash[..HASH_LEN].to_owned()
        } else {
            format!("{head}-{}", &hash[..HASH_LEN])
        }
    };
    let env = Name::parse(&format!("{}-{slug}", template.name))?;
    Ok(Identity {
        template: template.name.clone(),
        env,
        hostname: template.hostname.replacen("{slug}", &slug, 1),
        slug,
    })
}

/// The lowest port of `range` that `used` does not hold.
pub fn free_port(range: std::ops::RangeInclusive<u16>, used: &[u16]) -> Option<u16> {
    range.into_iter().find(|p| !used.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn template(hostname: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipway.toml");
        std::fs::write(
            &path,
            format!(
                r#"
[github]
webhook_secret = "ephemeral-test-secret"
[apps.shop]
repo = "acme/shop"
clone_url = "file:///srv/git/shop.git"
[apps.shop.ephemeral.demo]
branches = "demo/*"
hostname = "{hostname}"
ports = "20000-20002"
hosts = ["local"]
deploy_path = "/srv/demo"
[apps.shop.ephemeral.demo.route]
file = "/etc/nginx/conf.d/{{app}}-{{env}}.conf"
template = "server {{ server_name {{hostname}}; location / {{ proxy_pass http://127.0.0.1:{{port}}; }} }} # {{app}} {{env}} {{slug}} {{nope}}"
"#
            ),
        )
        .unwrap();
        (dir, Config::load(&path).unwrap())
    }

    fn slug_of(config: &Config, branch: &str) -> Result<Identity, Invalid> {
        let app = config.app("shop").unwrap();
        identify(template_for(app, branch).expect("matches"), branch)
    }

    #[test]
    fn clean_branches_keep_their_name() {
        let (_d, c) = template("demo-{slug}.app.example.com");
        let id = slug_of(&c, "demo/xyz").unwrap();
        assert_eq!(id.slug, "xyz");
        assert_eq!(id.env.as_str(), "demo-xyz");
        assert_eq!(id.hostname, "demo-xyz.app.example.com");
        assert_eq!(slug_of(&c, "demo/feature-x").unwrap().slug, "feature-x");
    }

    #[test]
    fn cleaned_branches_get_a_hash_and_never_collide() {
        let (_d, c) = template("demo-{slug}.app.example.com");
        let a = slug_of(&c, "demo/Feature_X").unwrap();
        let b = slug_of(&c, "demo/feature-x").unwrap();
        let d = slug_of(&c, "demo/feature_x").unwrap();
        assert!(a.slug.starts_with("feature-x-"), "{}", a.slug);
        assert_eq!(a.slug.len(), "feature-x-".len() + HASH_LEN);
        assert_ne!(a.slug, b.slug);
        assert_ne!(a.slug, d.slug);
        assert_ne!(b.slug, d.slug);
        // Stable: the same branch always names the same environment.
        assert_eq!(a, slug_of(&c, "demo/Feature_X").unwrap());
    }

    #[test]
    fn long_branches_fit_a_dns_label() {
        let (_d, c) = template("preview-{slug}.app.example.com");
        let long = format!("demo/{}", "a".repeat(200));
        let id = slug_of(&c, &long).unwrap();
        let label = id.hostname.split('.').next().unwrap();
        assert!(label.len() <= LABEL_MAX, "{label}");
        assert!(id.env.as_str().len() <= LABEL_MAX);
        // Two long branches that differ only past the cut still differ.
        let other = slug_of(&c, &format!("{long}b")).unwrap();
        assert_ne!(id.slug, other.slug);
    }

    #[test]
    fn hostile_branches_get_safe_slugs_or_a_reason() {
        let (_d, c) = template("demo-{slug}.app.example.com");
        let names = include_str!("../tests/fixtures/hostile-branch-names.txt");
        let ours = [
            "demo/$(touch${IFS}/tmp/canary)",
            "demo/'; touch x; '",
            "demo/a>b",
            "demo/%n%s%x",
            "demo/../../etc",
            "demo/-rf",
            "demo/--help",
            "demo/$HOME",
            "demo/{a,b}",
            "demo/!x",
            "demo/#x",
            "demo/ünïcödé",
            "demo/x\u{7f}y",
        ];
        let mut slugs = std::collections::HashSet::new();
        let all: Vec<&str> = names
            .lines()
            .filter(|l| !l.is_empty())
            .chain(ours)
            .collect();
        assert!(all.len() >= 20);
        for name in all {
            let branch = name.to_owned();
            match slug_of(&c, &branch) {
                Ok(id) => {
                    assert!(
                        id.slug
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                        "{branch:?} -> {:?}",
                        id.slug
                    );
                    assert!(!id.slug.starts_with('-') && !id.slug.ends_with('-'));
                    assert!(slugs.insert(id.slug.clone()), "{branch:?} collides");
                }
                Err(why) => assert!(why.0.contains("no letters or digits"), "{why}"),
            }
        }
        assert!(
            slugs.len() >= 20,
            "only {} hostile names got slugs",
            slugs.len()
        );
        assert!(slug_of(&c, "demo/日本").is_err());
        let err = slug_of(&c, "demo/___").unwrap_err();
        assert!(err.0.contains("no letters or digits"), "{err}");
    }

    #[test]
    fn ports_are_the_lowest_free_in_range() {
        assert_eq!(free_port(20000..=20002, &[]), Some(20000));
        assert_eq!(free_port(20000..=20002, &[20000, 20002]), Some(20001));
        assert_eq!(free_port(20000..=20002, &[20000, 20001, 20002]), None);
    }

    /// Branch names to try: anything printable, and near-collisions (case, `_`, `-`, spaces).
    fn branch_text() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof!["\\PC{0,90}", "[a-zA-Z0-9_ ./-]{1,12}", "[a-z0-9-]{1,70}"]
    }

    /// What `{slug}`-style placeholders should render to: each one replaced once, from left to
    /// right, and inserted text never read again (a reference for `Ephemeral::environment`).
    fn render_once(text: &str, values: &[(&str, &str)]) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            match values
                .iter()
                .find(|(k, _)| rest.starts_with(&format!("{{{k}}}")))
            {
                Some((k, v)) => {
                    out.push_str(v);
                    rest = &rest[k.len() + 2..];
                }
                None => {
                    out.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        out
    }

    fn is_dns_label(label: &str) -> bool {
        !label.is_empty()
            && label.len() <= LABEL_MAX
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    }

    // 256 cases each (proptest's default); `PROPTEST_CASES=N` runs more.
    proptest::proptest! {
        // Any branch: a slug that is a DNS label, an environment name and hostname built from it
        // alone, the same every time; or a refusal, exactly when nothing is left to name it by.
        #[test]
        fn every_branch_gets_a_dns_label_or_a_reason(rest in branch_text()) {
            let (_d, c) = template("preview-{slug}.app.example.com");
            let branch = format!("demo/{rest}");
            match slug_of(&c, &branch) {
                Ok(id) => {
                    proptest::prop_assert!(rest.chars().any(|c| c.is_ascii_alphanumeric()), "{branch:?}");
                    proptest::prop_assert!(is_dns_label(&id.slug), "{branch:?} -> {:?}", id.slug);
                    proptest::prop_assert!(is_dns_label(id.hostname.split('.').next().unwrap()), "{}", id.hostname);
                    proptest::prop_assert_eq!(&id.hostname, &format!("preview-{}.app.example.com", id.slug));
                    proptest::prop_assert_eq!(id.env.as_str(), format!("demo-{}", id.slug));
                    proptest::prop_assert!(id.env.as_str().len() <= LABEL_MAX);
                    proptest::prop_assert_eq!(id.clone(), slug_of(&c, &branch).unwrap());
                    // A clean, short branch (no `--`, which cleaning would fold) is its own slug.
                    if rest.len() <= 40 && is_dns_label(&rest) && !rest.contains("--") {
                        proptest::prop_assert_eq!(&id.slug, &rest);
                    }
                }
                Err(why) => {
                    proptest::prop_assert!(!rest.chars().any(|c| c.is_ascii_alphanumeric()), "{branch:?}: {why}");
                }
            }
        }

        // Two different branches never share an environment (up to the 24-bit hash).
        #[test]
        fn different_branches_get_different_slugs(a in branch_text(), b in branch_text()) {
            proptest::prop_assume!(a != b);
            let (_d, c) = template("demo-{slug}.app.example.com");
            if let (Ok(x), Ok(y)) = (slug_of(&c, &format!("demo/{a}")), slug_of(&c, &format!("demo/{b}"))) {
                proptest::prop_assert_ne!(x.slug, y.slug, "{:?} and {:?}", a, b);
            }
        }

        // The route renderer replaces each placeholder once with its value and nothing else: a
        // value is never read as a template, unknown `{..}` and nginx's own braces stay, and
        // a branch cannot move its route file out of the configured directory.
        #[test]
        fn routes_render_each_placeholder_once(rest in branch_text(), port in 20000u16..=20002) {
            let (_d, c) = template("demo-{slug}.app.example.com");
            let branch = format!("demo/{rest}");
            let Ok(id) = slug_of(&c, &branch) else { return Ok(()) };
            let app = c.app("shop").unwrap();
            let template = &app.ephemeral.values().next().unwrap();
            let env = template.environment(&app.name, &id.env, &id.slug, &id.hostname, port);
            let site = env.site.unwrap();
            let port_text = port.to_string();
            let values = [
                ("app", "shop"),
                ("env", id.env.as_str()),
                ("slug", id.slug.as_str()),
                ("hostname", id.hostname.as_str()),
                ("port", port_text.as_str()),
            ];
            proptest::prop_assert_eq!(&site.route, &render_once(&template.route.template, &values));
            proptest::prop_assert!(site.route.ends_with("{nope}"), "{}", site.route);
            proptest::prop_assert_eq!(&site.route_file, &format!("/etc/nginx/conf.d/shop-{}.conf", id.env));
            proptest::prop_assert_eq!(env.url.unwrap(), render_once(&template.url, &values));
            proptest::prop_assert_eq!(env.deploy_path, std::path::Path::new("/srv/demo").join(id.env.as_str()));
        }
    }
}
