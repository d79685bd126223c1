//! Which tags make releases, which of them are pre-releases, and which earlier tag a release's
//! notes start from. Pure: the mirror lists the tags ([`crate::deploy::source`]), this decides.

use globset::{Glob, GlobMatcher};
use semver::Version;

use crate::domain::Sha;

/// `[apps.<app>.releases] tags`: `"semver"`, or a glob such as `"v*"`.
#[derive(Debug, Clone)]
pub enum TagMatcher {
    /// Tags that are semver versions, with or without a leading `v`: `v1.4.0`, `1.4.0-rc.1`.
    Semver,
    Glob(GlobMatcher),
}

impl TagMatcher {
    /// The word that means [`TagMatcher::Semver`] (a glob cannot be a semver test).
    pub const SEMVER: &str = "semver";

    pub fn parse(text: &str) -> Result<Self, globset::Error> {
        if text == Self::SEMVER {
            return Ok(Self::Semver);
        }
        Ok(Self::Glob(Glob::new(text)?.compile_matcher()))
    }

    pub fn is_match(&self, tag: &str) -> bool {
        match self {
            Self::Semver => version(tag).is_some(),
            Self::Glob(glob) => glob.is_match(tag),
        }
    }
}

impl std::fmt::Display for TagMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Semver => f.write_str(Self::SEMVER),
            Self::Glob(glob) => f.write_str(glob.glob().glob()),
        }
    }
}

/// The semver version a tag names, with or without a leading `v` (`v1.4.0-rc.1+build.5`).
pub fn version(tag: &str) -> Option<Version> {
    Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

/// `v1.4.0-rc.1` and `1.4.0-beta`: a semver version with a pre-release part.
pub fn is_prerelease(tag: &str) -> bool {
    version(tag).is_some_and(|v| !v.pre.is_empty())
}

/// A tag of the repository, as the mirror lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub name: String,
    /// The commit it names (an annotated tag peeled).
    pub commit: Sha,
    /// Its creation time (the tagger's date, or the commit's for a lightweight tag), Unix seconds.
    pub created: i64,
    /// The released commit contains it.
    pub contained: bool,
}

/// The release before `tag` among `tags` (the repository's), that its notes start from.
///
/// A semver tag follows versions, not history: a final release starts from the highest lower
/// *final* version (`v1.2.0` after `v1.2.0-rc.1` on the same commit lists everything since
/// `v1.1.0`), a pre-release from the highest lower version of any kind; a backport `v1.2.1`
/// starts from `v1.2.0` although `v1.3.0` is newer. Other tags follow history: the newest
/// matching tag, created no later than `tag`, that the released commit contains.
pub fn previous<'t>(matcher: &TagMatcher, tag: &str, tags: &'t [Tag]) -> Option<&'t Tag> {
    let others = tags
        .iter()
        .filter(|t| t.name != tag && matcher.is_match(&t.name));
    if let Some(this) = version(tag) {
        return others
            .filter_map(|t| Some((version(&t.name)?, t)))
            .filter(|(v, _)| v.cmp_precedence(&this).is_lt())
            .filter(|(v, _)| v.pre.is_empty() || !this.pre.is_empty())
            .max_by(|(a, _), (b, _)| a.cmp_precedence(b))
            .map(|(_, t)| t);
    }
    let created = tags.iter().find(|t| t.name == tag).map(|t| t.created);
    others
        .filter(|t| t.contained && created.is_none_or(|c| t.created <= c))
        .max_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_pre_releases() {
        for (tag, pre) in [
            ("v1.4.0-rc.1", true),
            ("1.4.0-beta", true),
            ("v1.4.0-rc.1+build.5", true),
            ("v1.4.0", false),
            ("v1.4.0+build.5", false),
            ("v1.4-rc.1", false),
            ("release-2026", false),
            ("v1.4.0-", false),
        ] {
            assert_eq!(is_prerelease(tag), pre, "{tag}");
        }
    }

    #[test]
    fn semver_matches_versions_with_or_without_v() {
        let semver = TagMatcher::parse("semver").unwrap();
        for (tag, matches) in [
            ("v1.4.0", true),
            ("1.4.0", true),
            ("v1.4.0-rc.1+build.5", true),
            ("V1.4.0", false),
            ("vv1.4.0", false),
            ("v1.4", false),
            ("v01.4.0", false),
            ("release-1.4.0", false),
            ("semver", false),
        ] {
            assert_eq!(semver.is_match(tag), matches, "{tag}");
        }
        let glob = TagMatcher::parse("{app,api}-v*").unwrap();
        assert!(glob.is_match("api-v2") && !glob.is_match("web-v2"));
        assert_eq!(glob.to_string(), "{app,api}-v*");
        assert_eq!(semver.to_string(), "semver");
        assert!(TagMatcher::parse("v[").is_err());
    }

    fn tag(name: &str, commit: char, created: i64, contained: bool) -> Tag {
        Tag {
            name: name.into(),
            commit: Sha::parse(&commit.to_string().repeat(40)).unwrap(),
            created,
            contained,
        }
    }

    fn previous_name<'t>(matcher: &str, this: &str, tags: &'t [Tag]) -> Option<&'t str> {
        let matcher = TagMatcher::parse(matcher).unwrap();
        previous(&matcher, this, tags).map(|t| t.name.as_str())
    }

    #[test]
    fn a_final_release_after_its_candidates_on_the_same_commit_starts_at_the_last_final() {
        let tags = [
            tag("v1.1.0", 'a', 10, true),
            tag("v1.2.0-rc.1", 'b', 20, true),
            tag("v1.2.0-rc.2", 'c', 30, true),
            tag("v1.2.0", 'c', 40, true),
        ];
        for matcher in ["semver", "v*"] {
            assert_eq!(previous_name(matcher, "v1.2.0", &tags), Some("v1.1.0"));
            assert_eq!(
                previous_name(matcher, "v1.2.0-rc.2", &tags),
                Some("v1.2.0-rc.1")
            );
            assert_eq!(previous_name(matcher, "v1.2.0-rc.1", &tags), Some("v1.1.0"));
        }
    }

    #[test]
    fn a_backport_starts_at_the_highest_lower_version_not_the_newest_tag() {
        let tags = [
            tag("v1.2.0", 'a', 10, true),
            tag("v1.3.0", 'b', 20, false),
            tag("v1.2.1", 'c', 30, true),
            tag("v1.3.1", 'd', 40, false),
        ];
        assert_eq!(previous_name("semver", "v1.2.1", &tags), Some("v1.2.0"));
        assert_eq!(previous_name("semver", "v1.3.1", &tags), Some("v1.3.0"));
        // Only matching tags count: a glob that leaves out 1.3 falls back to 1.2.1.
        assert_eq!(previous_name("v1.2.*", "v1.3.1", &tags), Some("v1.2.1"));
    }

    #[test]
    fn the_first_release_has_no_previous() {
        let tags = [
            tag("v1.0.0", 'a', 10, true),
            tag("nightly-1", 'a', 5, true),
            tag("v0.9.0-rc.1", 'a', 1, true),
        ];
        assert_eq!(previous_name("semver", "v1.0.0", &tags), None);
        assert_eq!(previous_name("v*", "v1.0.0", &tags), None);
        assert_eq!(previous_name("nightly-*", "nightly-1", &tags), None);
    }

    #[test]
    fn other_tags_follow_history() {
        let tags = [
            tag("deploy-a", 'a', 10, true),
            tag("deploy-b", 'b', 20, true),
            // On another branch: not contained, though newer.
            tag("deploy-side", 'c', 25, false),
            tag("deploy-c", 'd', 30, true),
            // Tagged later on an older commit: created after deploy-c.
            tag("deploy-late", 'a', 40, true),
        ];
        assert_eq!(
            previous_name("deploy-*", "deploy-c", &tags),
            Some("deploy-b")
        );
        assert_eq!(previous_name("deploy-*", "deploy-a", &tags), None);
        assert_eq!(
            previous_name("{deploy-a,deploy-c}", "deploy-c", &tags),
            Some("deploy-a")
        );
    }
}
