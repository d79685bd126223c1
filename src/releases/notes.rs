//! A release's notes from the commits since the previous release, as GitHub's compare lists
//! them (Markdown, for the GitHub Release's body). Pure.

use crate::github::Comparison;

/// The notes of a release with no previous one: listing the repository's whole history would
/// say nothing, and GitHub's compare needs a base.
pub const FIRST_RELEASE: &str = "First release: no earlier tag matches the release tags, so \
                                 there are no changes to list.";

/// `* title ([`1a2b3c4`](page)) by @author` per commit, oldest first, since `previous`; the
/// commits GitHub did not list are counted and linked.
pub fn since(previous: &str, comparison: &Comparison) -> String {
    if comparison.total_commits == 0 {
        return format!("No changes since {previous}.\n");
    }
    let mut notes = format!("Changes since {previous}:\n\n");
    for commit in &comparison.commits {
        let short = commit.sha.get(..7).unwrap_or(&commit.sha);
        let sha = match &commit.url {
            Some(url) => format!("[`{short}`]({url})"),
            None => format!("`{short}`"),
        };
        let by = commit
            .author
            .as_ref()
            .map_or(String::new(), |author| format!(" by {author}"));
        notes.push_str(&format!("* {} ({sha}){by}\n", commit.title));
    }
    let listed = comparison.commits.len() as u64;
    if comparison.total_commits > listed {
        notes.push_str(&format!(
            "* … and {} more: {}\n",
            comparison.total_commits - listed,
            comparison.url
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::ComparedCommit;

    fn commit(sha: char, title: &str, url: bool, author: Option<&str>) -> ComparedCommit {
        let sha = sha.to_string().repeat(40);
        ComparedCommit {
            url: url.then(|| format!("https://github.com/acme/shop/commit/{sha}")),
            sha,
            title: title.into(),
            author: author.map(str::to_owned),
        }
    }

    #[test]
    fn each_commit_is_a_line_with_its_linked_short_sha_and_author() {
        let comparison = Comparison {
            total_commits: 2,
            commits: vec![
                commit('a', "faster deploys", true, Some("@octocat")),
                commit('b', "fix the build", false, None),
            ],
            url: "https://github.com/acme/shop/compare/v1.0.0...v1.1.0".into(),
        };
        assert_eq!(
            since("v1.0.0", &comparison),
            "Changes since v1.0.0:\n\n\
             * faster deploys ([`aaaaaaa`](https://github.com/acme/shop/commit/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa)) by @octocat\n\
             * fix the build (`bbbbbbb`)\n"
        );
    }

    #[test]
    fn commits_github_did_not_list_are_counted_and_linked() {
        let comparison = Comparison {
            total_commits: 251,
            commits: vec![commit('a', "one", false, Some("Ada"))],
            url: "https://github.com/acme/shop/compare/a...b".into(),
        };
        assert_eq!(
            since("v1.0.0", &comparison),
            "Changes since v1.0.0:\n\n* one (`aaaaaaa`) by Ada\n\
             * … and 250 more: https://github.com/acme/shop/compare/a...b\n"
        );
        let none = Comparison {
            total_commits: 0,
            commits: vec![],
            url: String::new(),
        };
        assert_eq!(since("v1.0.0", &none), "No changes since v1.0.0.\n");
    }
}
