//! GitHub events, interpreted. Pure: bytes in, an [`Event`] out; no I/O, no config.
//!
//! Only the fields slipway uses are parsed (borrowed from the body where possible), so a large
//! push costs no JSON tree, and GitHub adding fields never breaks us.

use serde::Deserialize;

use crate::domain::{GitRef, Sha};

/// A push, as far as deploying is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// `owner/name` of the repository pushed to.
    pub repo: String,
    /// GitHub's `repository.fork`: the repository pushed to is a fork of another one.
    pub fork: bool,
    pub target: PushTarget,
    /// The new head; `None` when the ref was deleted.
    pub sha: Option<Sha>,
    /// GitHub login of who pushed.
    pub pushed_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushTarget {
    Branch(GitRef),
    Tag(GitRef),
    Other(String),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

#[derive(Deserialize)]
struct PushPayload<'a> {
    #[serde(rename = "ref", borrow)]
    git_ref: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    after: std::borrow::Cow<'a, str>,
    #[serde(default)]
    deleted: bool,
    repository: Repository,
    pusher: Option<Pusher>,
    sender: Option<Sender>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
    /// Absent in hand-written payloads; GitHub always sends it.
    #[serde(default)]
    fork: bool,
}

#[derive(Deserialize)]
struct Pusher {
    name: String,
}

#[derive(Deserialize)]
struct Sender {
    login: String,
}

/// Parses a `push` event body.
pub fn parse_push(body: &[u8]) -> Result<Push, ParseError> {
    let payload: PushPayload = serde_json::from_slice(body)
        .map_err(|e| ParseError(format!("invalid push payload: {e}")))?;
    let sha = Sha::parse(&payload.after).map_err(|e| ParseError(format!("after: {e}")))?;
    let sha = (!payload.deleted && !sha.is_null()).then_some(sha);
    let name = payload.git_ref.as_ref();
    let target = if let Some(branch) = name.strip_prefix("refs/heads/") {
        PushTarget::Branch(GitRef::parse(branch).map_err(|e| ParseError(format!("ref: {e}")))?)
    } else if let Some(tag) = name.strip_prefix("refs/tags/") {
        PushTarget::Tag(GitRef::parse(tag).map_err(|e| ParseError(format!("ref: {e}")))?)
    } else {
        PushTarget::Other(name.to_owned())
    };
    let pushed_by = payload
        .sender
        .map(|s| s.login)
        .or(payload.pusher.map(|p| p.name))
        .unwrap_or_else(|| "unknown".into());
    Ok(Push {
        repo: payload.repository.full_name,
        fork: payload.repository.fork,
        target,
        sha,
        pushed_by,
    })
}

/// Parses a `delete` event body (a branch or tag was deleted) as the push that deleted it.
pub fn parse_delete(body: &[u8]) -> Result<Push, ParseError> {
    #[derive(Deserialize)]
    struct DeletePayload {
        #[serde(rename = "ref")]
        git_ref: String,
        ref_type: String,
        repository: Repository,
        sender: Option<Sender>,
    }
    let payload: DeletePayload = serde_json::from_slice(body)
        .map_err(|e| ParseError(format!("invalid delete payload: {e}")))?;
    let name = GitRef::parse(&payload.git_ref).map_err(|e| ParseError(format!("ref: {e}")))?;
    let target = match payload.ref_type.as_str() {
        "branch" => PushTarget::Branch(name),
        "tag" => PushTarget::Tag(name),
        other => PushTarget::Other(format!("{other} {name}")),
    };
    Ok(Push {
        repo: payload.repository.full_name,
        fork: payload.repository.fork,
        target,
        sha: None,
        pushed_by: payload.sender.map_or_else(|| "unknown".into(), |s| s.login),
    })
}

/// The `zen` line of a `ping` event, for the answer.
pub fn parse_ping(body: &[u8]) -> Result<String, ParseError> {
    #[derive(Deserialize)]
    struct Ping {
        zen: Option<String>,
    }
    let ping: Ping = serde_json::from_slice(body)
        .map_err(|e| ParseError(format!("invalid ping payload: {e}")))?;
    Ok(ping.zen.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRANCH: &[u8] = include_bytes!("../tests/fixtures/github/push.branch.json");
    const DELETED: &[u8] = include_bytes!("../tests/fixtures/github/push.branch-deleted.json");
    const TAG: &[u8] = include_bytes!("../tests/fixtures/github/push.tag.json");
    const PING: &[u8] = include_bytes!("../tests/fixtures/github/ping.json");

    #[test]
    fn a_branch_push_from_github() {
        let push = parse_push(BRANCH).unwrap();
        assert_eq!(push.repo, "Codertocat/Hello-World");
        assert_eq!(
            push.target,
            PushTarget::Branch(GitRef::parse("master").unwrap())
        );
        assert_eq!(
            push.sha.unwrap().as_str(),
            "199eddf46df50de8d02e99bf1c5fdb4101338224"
        );
        assert_eq!(push.pushed_by, "Codertocat");
        assert!(!push.fork);
    }

    #[test]
    fn a_deleted_branch_has_no_sha() {
        let push = parse_push(DELETED).unwrap();
        assert_eq!(
            push.target,
            PushTarget::Branch(GitRef::parse("feature-branch").unwrap())
        );
        assert_eq!(push.sha, None);
    }

    #[test]
    fn a_tag_push() {
        let push = parse_push(TAG).unwrap();
        assert_eq!(
            push.target,
            PushTarget::Tag(GitRef::parse("v0.0.1").unwrap())
        );
        assert!(push.sha.is_some());
        // This fixture's repository is a fork (`"fork": true`).
        assert!(push.fork);
    }

    #[test]
    fn a_delete_event_is_a_push_without_sha() {
        // The shape of GitHub's documented `delete` payload (fields we do not read left out).
        let body = br#"{"ref": "demo/xyz", "ref_type": "branch", "pusher_type": "user",
            "repository": {"full_name": "acme/shop"}, "sender": {"login": "octocat"}}"#;
        let push = parse_delete(body).unwrap();
        assert_eq!(
            push.target,
            PushTarget::Branch(GitRef::parse("demo/xyz").unwrap())
        );
        assert_eq!((push.sha, push.repo.as_str()), (None, "acme/shop"));
        let bad =
            br#"{"ref": "a\u0001b", "ref_type": "branch", "repository": {"full_name": "a/b"}}"#;
        assert!(parse_delete(bad).unwrap_err().to_string().contains("ref"));
    }

    #[test]
    fn a_ping() {
        assert!(!parse_ping(PING).unwrap().is_empty());
    }

    #[test]
    fn bad_bodies_get_one_line_reasons() {
        let cases: &[&[u8]] = &[
            b"not json",
            b"{}",
            br#"{"ref": "refs/heads/main", "after": "xyz", "repository": {"full_name": "a/b"}}"#,
            br#"{"ref": "refs/heads/a\u0001b", "after": "199eddf46df50de8d02e99bf1c5fdb4101338224", "repository": {"full_name": "a/b"}}"#,
            b"\xff\xfe",
        ];
        for body in cases {
            let err = parse_push(body).unwrap_err().to_string();
            assert!(!err.contains('\n'), "{err}");
        }
    }

    /// GitHub's push payload with `ref` and `after` replaced.
    fn push_with(git_ref: &str, after: &str) -> Vec<u8> {
        let mut payload: serde_json::Value = serde_json::from_slice(BRANCH).unwrap();
        payload["ref"] = git_ref.into();
        payload["after"] = after.into();
        serde_json::to_vec(&payload).unwrap()
    }

    // 256 cases each (proptest's default); `PROPTEST_CASES=N` runs more.
    proptest::proptest! {
        // Any bytes at all: an error of one line, or a push; never a panic.
        #[test]
        fn any_body_parses_or_gets_a_one_line_reason(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            for parsed in [parse_push(&body), parse_delete(&body)] {
                if let Err(err) = parsed {
                    proptest::prop_assert!(!err.to_string().contains('\n'), "{err}");
                }
            }
        }

        // A branch name arrives exactly as pushed (JSON escapes undone, nothing else changed),
        // or the push is refused because `GitRef` refuses the name; never altered.
        #[test]
        fn branch_names_arrive_exactly_or_are_refused(name in "\\PC{0,40}|[\\x00-\\x7f]{0,40}") {
            let sha = "199eddf46df50de8d02e99bf1c5fdb4101338224";
            let parsed = parse_push(&push_with(&format!("refs/heads/{name}"), sha));
            match GitRef::parse(&name) {
                Ok(git_ref) => {
                    let push = parsed.unwrap();
                    proptest::prop_assert_eq!(push.target, PushTarget::Branch(git_ref));
                    proptest::prop_assert_eq!(push.sha.as_ref().map(Sha::as_str), Some(sha));
                }
                Err(_) => proptest::prop_assert!(parsed.unwrap_err().to_string().starts_with("ref: ")),
            }
        }

        // `after` is a deploy only if it is a full, non-zero commit id.
        #[test]
        fn after_is_a_commit_id_or_refused(after in "[0-9a-fA-F]{0,70}|0{40}") {
            match parse_push(&push_with("refs/heads/main", &after)) {
                Ok(push) => {
                    proptest::prop_assert!(after.len() == 40 || after.len() == 64);
                    proptest::prop_assert_eq!(push.sha.as_ref().map(Sha::as_str), (!after.bytes().all(|b| b == b'0')).then_some(after.as_str()));
                }
                Err(err) => proptest::prop_assert!(err.to_string().starts_with("after: "), "{err}"),
            }
        }
    }
}
