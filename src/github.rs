//! The calls slipway makes to GitHub's REST API: create a deployment, set its status (so a deploy
//! shows on the repository's Environments page and on its pull requests), list the branches
//! with their head commits, and publish releases (find one by tag, compare two commits for its
//! notes or have GitHub generate them, create it). Built on octocrab's typed builders.
//!
//! Boundaries: webhooks come in through `http/github.rs` and `gitops.rs`, not here; this module
//! only talks outwards, and decides nothing: callers choose what to report and when.
//!
//! Every call is bounded by a timeout (a worker must not hang on GitHub) and is never retried
//! here: a retried POST could create a second deployment. The token goes out only to the
//! configured `api_url`'s host (octocrab attaches it to that authority alone, pagination links
//! included) and is masked out of error messages.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use octocrab::Octocrab;
use octocrab::models::repos::DeploymentStatusState;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};

use crate::domain::Sha;

/// How long one request may take, answer included. GitHub answers in well under a second.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// GitHub's largest page.
const PER_PAGE: u8 = 100;

/// What a tag keeps as it is in a path: unreserved characters and `/` (git refuses `.` and `..`
/// components, so a `/` cannot climb); everything else is percent-encoded.
const PATH_KEEPS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// GitHub refuses (422) a deployment status whose description is longer.
const STATUS_DESCRIPTION_MAX: usize = 140;

/// A client for one GitHub (github.com or an Enterprise Server), authenticated with the
/// configured token. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct GitHub {
    octocrab: Octocrab,
    /// Kept to mask it out of errors: an error answer may echo the request's headers (a proxy's
    /// error page, or an `api_url` that points at something other than GitHub).
    token: SecretString,
    timeout: Duration,
}

impl fmt::Debug for GitHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHub")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A deployment to record on GitHub, before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment {
    /// What is deployed: a branch, a tag or a commit SHA.
    pub git_ref: String,
    pub environment: String,
    pub description: String,
    /// The environment is specific to this deployment and will not exist later (a review app).
    pub transient: bool,
    /// End users interact with the environment.
    pub production: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState {
    InProgress,
    Success,
    Failure,
    Inactive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: StatusState,
    /// Where the deployed app is reachable.
    pub environment_url: Option<String>,
    /// Where the deploy's log is (see [`crate::config::Github::job_url`]).
    pub log_url: Option<String>,
    /// Shortened to GitHub's limit of 140 characters.
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRelease {
    pub tag: String,
    pub sha: String,
    pub notes: String,
    pub prerelease: bool,
}

/// A release on GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub id: u64,
    /// Its page.
    pub url: String,
}

/// The commits a head has that a base has not (`GET /repos/{o}/{r}/compare/{base}...{head}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// All of them, also those GitHub did not list (it lists at most 250 in one answer).
    pub total_commits: u64,
    /// Oldest first.
    pub commits: Vec<ComparedCommit>,
    /// The comparison's page on GitHub.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComparedCommit {
    pub sha: String,
    /// The first line of its message.
    pub title: String,
    /// Its page on GitHub.
    pub url: Option<String>,
    /// `@login` of its GitHub author, else the name in the commit.
    pub author: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    pub name: String,
    /// The branch's head commit.
    pub sha: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// Nothing was sent.
    #[error("{0:?} is not a GitHub repository: expected owner/name")]
    BadRepo(String),
    /// GitHub answered with an error status; `message` is GitHub's own explanation.
    #[error("GitHub answered {request} with HTTP {status}: {message}")]
    Status {
        request: String,
        status: u16,
        message: String,
        /// The `code` of each of GitHub's `errors` (e.g. `already_exists`), to branch on.
        codes: Vec<String>,
    },
    #[error("GitHub did not answer {request} within {}s", timeout.as_secs_f32())]
    Timeout { request: String, timeout: Duration },
    /// No answer (connection refused, TLS), or an answer that is not what GitHub sends.
    #[error("{request} to GitHub failed: {source}")]
    Request {
        request: String,
        #[source]
        source: octocrab::Error,
    },
}

impl GitHubError {
    /// GitHub refused to create something that exists (`422`, code `already_exists`): someone
    /// else created it first.
    pub fn already_exists(&self) -> bool {
        matches!(self, Self::Status { status: 422, codes, .. } if codes.iter().any(|c| c == "already_exists"))
    }
}

impl GitHub {
    /// None when no token is configured. Must be called inside the tokio runtime the client
    /// will be used on (octocrab spawns its connection worker there).
    pub fn from_config(github: &crate::config::Github) -> anyhow::Result<Option<Self>> {
        let Some(token) = &github.token else {
            return Ok(None);
        };
        let octocrab = Octocrab::builder()
            .base_uri(github.api_url.as_str())
            .with_context(|| format!("github.api_url {:?} is not a usable URL", github.api_url))?
            .personal_token(token.clone())
            .build()
            .context("cannot set up the GitHub client (TLS roots)")?;
        Ok(Some(Self {
            octocrab,
            token: token.clone(),
            timeout: TIMEOUT,
        }))
    }

    /// Replaces [`TIMEOUT`] as the bound on each request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Creates a deployment of `d.git_ref` and returns its id. GitHub is asked not to merge the
    /// default branch into the ref and not to check commit statuses: slipway deploys exactly the
    /// commit it was given, and has already decided to.
    pub async fn create_deployment(
        &self,
        repo: &str,
        d: &NewDeployment,
    ) -> Result<u64, GitHubError> {
        let (owner, name) = split_repo(repo)?;
        let request = format!("POST /repos/{owner}/{name}/deployments");
        let repo = self.octocrab.repos(owner, name);
        let create = repo
            .deployments()
            .create(d.git_ref.as_str())
            .environment(d.environment.as_str())
            .description(d.description.as_str())
            .transient_environment(d.transient)
            .production_environment(d.production)
            .auto_merge(false)
            .required_contexts(Vec::<String>::new())
            .send();
        let deployment = self.call(request, create).await?;
        Ok(deployment.id.into_inner())
    }

    /// Adds a status to a deployment. A success also marks the environment's earlier
    /// deployments inactive (`auto_inactive`), so GitHub shows one live deployment.
    pub async fn set_status(
        &self,
        repo: &str,
        deployment_id: u64,
        s: &Status,
    ) -> Result<(), GitHubError> {
        let (owner, name) = split_repo(repo)?;
        let request = format!("POST /repos/{owner}/{name}/deployments/{deployment_id}/statuses");
        let repo = self.octocrab.repos(owner, name);
        let statuses = repo.deployments().statuses(deployment_id);
        let state = match s.state {
            StatusState::InProgress => DeploymentStatusState::InProgress,
            StatusState::Success => DeploymentStatusState::Success,
            StatusState::Failure => DeploymentStatusState::Failure,
            StatusState::Inactive => DeploymentStatusState::Inactive,
        };
        let mut create = statuses
            .create(state)
            .description(shorten(&s.description, STATUS_DESCRIPTION_MAX));
        if let Some(url) = &s.environment_url {
            create = create.environment_url(url.as_str());
        }
        if let Some(url) = &s.log_url {
            create = create.log_url(url.as_str());
        }
        if s.state == StatusState::Success {
            create = create.auto_inactive(true);
        }
        self.call(request, create.send()).await?;
        Ok(())
    }

    /// The release of `tag`, if one exists.
    pub async fn release_by_tag(
        &self,
        repo: &str,
        tag: &str,
    ) -> Result<Option<Release>, GitHubError> {
        let (owner, name) = split_repo(repo)?;
        // octocrab puts the tag into the path as it is: a `#` or `%` in it (git allows both)
        // would ask for another release.
        let tag = utf8_percent_encode(tag, PATH_KEEPS).to_string();
        let request = format!("GET /repos/{owner}/{name}/releases/tags/{tag}");
        let repo = self.octocrab.repos(owner, name);
        match self.call(request, repo.releases().get_by_tag(&tag)).await {
            Ok(release) => Ok(Some(Release {
                id: release.id.into_inner(),
                url: release.html_url.to_string(),
            })),
            Err(GitHubError::Status { status: 404, .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// GitHub's generated release notes for `tag` at `sha`, since `previous` (a tag).
    pub async fn generate_notes(
        &self,
        repo: &str,
        tag: &str,
        sha: &str,
        previous: Option<&str>,
    ) -> Result<String, GitHubError> {
        let (owner, name) = split_repo(repo)?;
        let request = format!("POST /repos/{owner}/{name}/releases/generate-notes");
        let repo = self.octocrab.repos(owner, name);
        let releases = repo.releases();
        let mut generate = releases.generate_release_notes(tag).target_commitish(sha);
        if let Some(previous) = previous {
            generate = generate.previous_tag_name(previous);
        }
        Ok(self.call(request, generate.send()).await?.body)
    }

    /// The commits `head` has that `base` has not, as GitHub lists them in one answer (at most
    /// 250; [`Comparison::total_commits`] counts them all).
    pub async fn compare(
        &self,
        repo: &str,
        base: &Sha,
        head: &Sha,
    ) -> Result<Comparison, GitHubError> {
        /// Only what the notes use: octocrab's `CommitComparison` requires every field of the
        /// base and merge-base commits too, so a field GitHub leaves out or nulls that slipway
        /// never reads would fail the release.
        #[derive(serde::Deserialize)]
        struct Answer {
            total_commits: u64,
            html_url: String,
            commits: Vec<AnswerCommit>,
        }
        #[derive(serde::Deserialize)]
        struct AnswerCommit {
            sha: String,
            html_url: Option<String>,
            commit: GitCommit,
            author: Option<Login>,
        }
        #[derive(serde::Deserialize)]
        struct GitCommit {
            message: String,
            author: Option<Name>,
        }
        #[derive(serde::Deserialize)]
        struct Login {
            login: String,
        }
        #[derive(serde::Deserialize)]
        struct Name {
            name: String,
        }
        let (owner, name) = split_repo(repo)?;
        // Commit ids, not names: nothing from a tag's name reaches the path.
        let route = format!("/repos/{owner}/{name}/compare/{base}...{head}");
        let request = format!("GET {route}");
        let answer: Answer = self
            .call(request, self.octocrab.get(route, None::<&()>))
            .await?;
        Ok(Comparison {
            total_commits: answer.total_commits,
            url: answer.html_url,
            commits: answer
                .commits
                .into_iter()
                .map(|c| ComparedCommit {
                    title: c
                        .commit
                        .message
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                    author: c
                        .author
                        .map(|a| format!("@{}", a.login))
                        .or(c.commit.author.map(|a| a.name)),
                    sha: c.sha,
                    url: c.html_url,
                })
                .collect(),
        })
    }

    /// Publishes a release of `r.tag` at `r.sha`. A release of the tag that exists already is
    /// refused: [`GitHubError::already_exists`].
    pub async fn create_release(&self, repo: &str, r: &NewRelease) -> Result<Release, GitHubError> {
        let (owner, name) = split_repo(repo)?;
        let request = format!("POST /repos/{owner}/{name}/releases");
        let repo = self.octocrab.repos(owner, name);
        let releases = repo.releases();
        let create = releases
            .create(r.tag.as_str())
            .target_commitish(r.sha.as_str())
            .name(r.tag.as_str())
            .body(r.notes.as_str())
            .draft(false)
            .prerelease(r.prerelease)
            .send();
        let release = self.call(request, create).await?;
        Ok(Release {
            id: release.id.into_inner(),
            url: release.html_url.to_string(),
        })
    }

    /// Every branch with its head sha, following pagination (per_page=100) to the end.
    pub async fn branches(&self, repo: &str) -> Result<Vec<Branch>, GitHubError> {
        let (owner, name) = split_repo(repo)?;
        let request = format!("GET /repos/{owner}/{name}/branches");
        let handler = self.octocrab.repos(owner, name);
        let first = handler.branches().list().per_page(PER_PAGE).send();
        let mut page: octocrab::Page<octocrab::models::repos::Branch> =
            self.call(request, first).await?;
        let mut branches = Vec::new();
        loop {
            branches.extend(page.take_items().into_iter().map(|b| Branch {
                name: b.name,
                sha: b.commit.sha,
            }));
            // The `Link` header's next page, an absolute URL (GitHub's points at
            // /repositories/{id}/branches); octocrab sends the token only if its host is
            // `api_url`'s.
            let Some(next) = page.next.take() else {
                return Ok(branches);
            };
            let request = format!("GET {}", next.path_and_query().map_or("/", |p| p.as_str()));
            let get = self.octocrab.get(next.to_string(), None::<&()>);
            page = self.call(request, get).await?;
        }
    }

    /// Runs one request under the timeout and turns its failure into a [`GitHubError`].
    async fn call<T>(
        &self,
        request: String,
        send: impl Future<Output = octocrab::Result<T>>,
    ) -> Result<T, GitHubError> {
        match tokio::time::timeout(self.timeout, send).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(octocrab::Error::GitHub { source, .. })) => Err(GitHubError::Status {
                request,
                status: source.status_code.as_u16(),
                message: self.explain(&source),
                codes: source
                    .errors
                    .iter()
                    .flatten()
                    .filter_map(|e| e.get("code")?.as_str().map(str::to_owned))
                    .collect(),
            }),
            Ok(Err(source)) => Err(GitHubError::Request { request, source }),
            Err(_) => Err(GitHubError::Timeout {
                request,
                timeout: self.timeout,
            }),
        }
    }

    /// GitHub's message, with the details of a validation failure and a hint where the status
    /// alone misleads; the token masked, should the answer echo it.
    fn explain(&self, err: &octocrab::GitHubError) -> String {
        let mut text = err.message.clone();
        let details: Vec<String> = err
            .errors
            .iter()
            .flatten()
            .map(|e| match e.get("message").and_then(|m| m.as_str()) {
                Some(message) => message.to_owned(),
                None => e.to_string(),
            })
            .collect();
        if !details.is_empty() {
            text = format!("{text} ({})", details.join("; "));
        }
        match err.status_code.as_u16() {
            401 => text.push_str(" (check github.token)"),
            404 => text.push_str(
                " (GitHub also answers 404 when github.token may not read the repository)",
            ),
            _ => {}
        }
        text.replace(self.token.expose_secret(), crate::mask::MASK)
    }
}

/// `owner/name`, each part made of the characters GitHub allows, so that neither can change the
/// request's path.
fn split_repo(repo: &str) -> Result<(&str, &str), GitHubError> {
    let part_ok = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if part_ok(owner) && part_ok(name) => Ok((owner, name)),
        _ => Err(GitHubError::BadRepo(repo.to_owned())),
    }
}

/// At most `max` characters, the last one `…` when something was cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(max - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::{Value, json};
    use wiremock::matchers::{
        body_json, header, method, path, query_param, query_param_is_missing,
    };
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const TOKEN: &str = "ghp_fakeToken0123456789abcdef";
    const AUTH: &str = "Bearer ghp_fakeToken0123456789abcdef";

    fn config(api_url: &str, token: Option<&str>) -> crate::config::Github {
        crate::config::Github {
            webhook_secret: SecretString::from("a-webhook-secret"),
            api_url: api_url.to_owned(),
            token: token.map(SecretString::from),
            public_url: Some("https://slipway.example.com".into()),
        }
    }

    fn client(server: &MockServer) -> GitHub {
        GitHub::from_config(&config(&server.uri(), Some(TOKEN)))
            .unwrap()
            .expect("a token is configured")
    }

    /// A deployment as GitHub answers its creation (the fields octocrab requires, and more).
    fn deployment(id: u64, git_ref: &str) -> Value {
        let repo = "https://api.github.com/repos/acme/shop";
        json!({
            "url": format!("{repo}/deployments/{id}"),
            "id": id,
            "node_id": "MDEwOkRlcGxveW1lbnQx",
            "sha": "a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d",
            "ref": git_ref,
            "task": "deploy",
            "payload": {},
            "original_environment": "staging",
            "environment": "staging",
            "description": "Deploy request from slipway",
            "creator": null,
            "created_at": "2026-11-02T10:00:00Z",
            "updated_at": "2026-11-02T10:00:00Z",
            "statuses_url": format!("{repo}/deployments/{id}/statuses"),
            "repository_url": repo,
            "transient_environment": false,
            "production_environment": false
        })
    }

    fn deployment_status(id: u64, state: &str) -> Value {
        let repo = "https://api.github.com/repos/acme/shop";
        json!({
            "url": format!("{repo}/deployments/1234/statuses/{id}"),
            "id": id,
            "node_id": "MDE2OkRlcGxveW1lbnRTdGF0dXMx",
            "state": state,
            "creator": null,
            "description": "",
            "environment": "staging",
            "target_url": "",
            "log_url": "",
            "environment_url": "",
            "created_at": "2026-11-02T10:00:00Z",
            "updated_at": "2026-11-02T10:00:00Z",
            "deployment_url": format!("{repo}/deployments/1234"),
            "repository_url": repo
        })
    }

    #[tokio::test]
    async fn create_deployment_sends_every_field_and_returns_the_id() {
        let server = MockServer::start().await;
        let sha = "a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d";
        Mock::given(method("POST"))
            .and(path("/repos/acme/shop/deployments"))
            .and(header("authorization", AUTH))
            .and(body_json(json!({
                "ref": sha,
                "environment": "staging",
                "description": "shop to staging (job 42)",
                "transient_environment": false,
                "production_environment": true,
                "auto_merge": false,
                "required_contexts": []
            })))
            .respond_with(ResponseTemplate::new(201).set_body_json(deployment(1234, sha)))
            .expect(1)
            .mount(&server)
            .await;
        let id = client(&server)
            .create_deployment(
                "acme/shop",
                &NewDeployment {
                    git_ref: sha.into(),
                    environment: "staging".into(),
                    description: "shop to staging (job 42)".into(),
                    transient: false,
                    production: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(id, 1234);
    }

    #[tokio::test]
    async fn each_status_state_has_its_body() {
        let server = MockServer::start().await;
        let log_url = config("", None).job_url(42).unwrap();
        let long = "x".repeat(200);
        let cases = [
            (
                Status {
                    state: StatusState::InProgress,
                    environment_url: None,
                    log_url: Some(log_url.clone()),
                    description: "deploying".into(),
                },
                json!({
                    "state": "in_progress",
                    "log_url": "https://slipway.example.com/api/jobs/42",
                    "description": "deploying"
                }),
            ),
            (
                Status {
                    state: StatusState::Success,
                    environment_url: Some("https://staging.shop.example.com".into()),
                    log_url: Some(log_url.clone()),
                    description: "deployed".into(),
                },
                json!({
                    "state": "success",
                    "environment_url": "https://staging.shop.example.com",
                    "log_url": "https://slipway.example.com/api/jobs/42",
                    "description": "deployed",
                    "auto_inactive": true
                }),
            ),
            (
                Status {
                    state: StatusState::Failure,
                    environment_url: None,
                    log_url: Some(log_url.clone()),
                    description: long.clone(),
                },
                json!({
                    "state": "failure",
                    "log_url": "https://slipway.example.com/api/jobs/42",
                    "description": format!("{}…", &long[..139])
                }),
            ),
            (
                Status {
                    state: StatusState::Inactive,
                    environment_url: None,
                    log_url: None,
                    description: "replaced".into(),
                },
                json!({ "state": "inactive", "description": "replaced" }),
            ),
        ];
        for (i, (_, body)) in cases.iter().enumerate() {
            let state = body["state"].as_str().unwrap();
            Mock::given(method("POST"))
                .and(path("/repos/acme/shop/deployments/1234/statuses"))
                .and(header("authorization", AUTH))
                .and(body_json(body))
                .respond_with(
                    ResponseTemplate::new(201).set_body_json(deployment_status(i as u64, state)),
                )
                .expect(1)
                .named(state)
                .mount(&server)
                .await;
        }
        let github = client(&server);
        for (status, _) in &cases {
            github.set_status("acme/shop", 1234, status).await.unwrap();
        }
    }

    #[tokio::test]
    async fn branches_follow_the_link_header_to_the_last_page() {
        let server = MockServer::start().await;
        let uri = server.uri();
        let all: Vec<Branch> = (0..237)
            .map(|i| Branch {
                name: format!("branch-{i:03}"),
                sha: format!("{i:040x}"),
            })
            .collect();
        let page = |range: std::ops::Range<usize>| {
            let items: Vec<Value> = all[range]
                .iter()
                .map(|b| {
                    json!({
                        "name": b.name,
                        "commit": {
                            "sha": b.sha,
                            "url": format!("https://api.github.com/repos/acme/shop/commits/{}", b.sha)
                        },
                        "protected": false
                    })
                })
                .collect();
            Value::Array(items)
        };
        // As GitHub does, the links point at the repository by id, not by name.
        let link = |n: u32| format!("<{uri}/repositories/42/branches?per_page=100&page={n}>");
        Mock::given(method("GET"))
            .and(path("/repos/acme/shop/branches"))
            .and(query_param("per_page", "100"))
            .and(query_param_is_missing("page"))
            .and(header("authorization", AUTH))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(page(0..100))
                    .insert_header(
                        "link",
                        format!("{}; rel=\"next\", {}; rel=\"last\"", link(2), link(3)).as_str(),
                    ),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/repositories/42/branches"))
            .and(query_param("per_page", "100"))
            .and(query_param("page", "2"))
            .and(header("authorization", AUTH))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(page(100..200))
                    .insert_header(
                    "link",
                    format!(
                        "{}; rel=\"prev\", {}; rel=\"next\", {}; rel=\"last\", {}; rel=\"first\"",
                        link(1),
                        link(3),
                        link(3),
                        link(1)
                    )
                    .as_str(),
                ),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/repositories/42/branches"))
            .and(query_param("per_page", "100"))
            .and(query_param("page", "3"))
            .and(header("authorization", AUTH))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(page(200..237))
                    .insert_header(
                        "link",
                        format!("{}; rel=\"prev\", {}; rel=\"first\"", link(2), link(1)).as_str(),
                    ),
            )
            .expect(1)
            .mount(&server)
            .await;
        let branches = client(&server).branches("acme/shop").await.unwrap();
        assert_eq!(branches.len(), 237);
        assert_eq!(branches, all);
    }

    #[tokio::test]
    async fn compare_lists_titles_links_and_authors_and_counts_them_all() {
        let server = MockServer::start().await;
        let (base, head) = ("a".repeat(40), "b".repeat(40));
        let commit = |sha: &str, message: &str, author: Value| {
            json!({
                "sha": sha, "node_id": "C_1", "html_url": format!("https://github.com/acme/shop/commit/{sha}"),
                "commit": { "message": message, "author": { "name": "Ada Lovelace", "email": "ada@example.com", "date": "2026-11-02T10:00:00Z" } },
                "author": author, "committer": null, "parents": []
            })
        };
        Mock::given(method("GET"))
            .and(path(format!("/repos/acme/shop/compare/{base}...{head}")))
            .and(query_param_is_missing("page"))
            .and(header("authorization", AUTH))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "url": "https://api.github.com/repos/acme/shop/compare/a...b",
                "html_url": "https://github.com/acme/shop/compare/a...b",
                "status": "ahead", "ahead_by": 300, "behind_by": 0, "total_commits": 300,
                "commits": [
                    commit(&"c".repeat(40), "faster deploys\n\nwith details", json!({ "login": "octocat", "id": 1 })),
                    // A commit whose email GitHub does not know: no GitHub author.
                    commit(&"d".repeat(40), "fix", Value::Null),
                ],
                "files": []
            })))
            .expect(1)
            .mount(&server)
            .await;
        let comparison = client(&server)
            .compare(
                "acme/shop",
                &Sha::parse(&base).unwrap(),
                &Sha::parse(&head).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            comparison,
            Comparison {
                total_commits: 300,
                url: "https://github.com/acme/shop/compare/a...b".into(),
                commits: vec![
                    ComparedCommit {
                        sha: "c".repeat(40),
                        title: "faster deploys".into(),
                        url: Some(format!(
                            "https://github.com/acme/shop/commit/{}",
                            "c".repeat(40)
                        )),
                        author: Some("@octocat".into()),
                    },
                    ComparedCommit {
                        sha: "d".repeat(40),
                        title: "fix".into(),
                        url: Some(format!(
                            "https://github.com/acme/shop/commit/{}",
                            "d".repeat(40)
                        )),
                        author: Some("Ada Lovelace".into()),
                    },
                ],
            }
        );
    }

    #[tokio::test]
    async fn a_tag_is_one_path_part_whatever_its_characters() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/repos/acme/shop/releases/tags/rel/v1%232%25x%2By"))
            .and(header("authorization", AUTH))
            .respond_with(
                ResponseTemplate::new(404).set_body_json(json!({ "message": "Not Found" })),
            )
            .expect(1)
            .mount(&server)
            .await;
        let found = client(&server)
            .release_by_tag("acme/shop", "rel/v1#2%x+y")
            .await
            .unwrap();
        assert_eq!(found, None);
    }

    #[tokio::test]
    async fn a_release_that_exists_already_is_told_apart_from_other_refusals() {
        let server = MockServer::start().await;
        let refusal = |code: &str| {
            ResponseTemplate::new(422).set_body_json(json!({
                "message": "Validation Failed",
                "errors": [{ "resource": "Release", "code": code, "field": "tag_name" }],
                "documentation_url": "https://docs.github.com/rest/releases/releases#create-a-release",
                "status": "422"
            }))
        };
        let release = NewRelease {
            tag: "v1.0.0".into(),
            sha: "a".repeat(40),
            notes: "notes".into(),
            prerelease: false,
        };
        let body = json!({
            "tag_name": "v1.0.0", "target_commitish": "a".repeat(40), "name": "v1.0.0",
            "body": "notes", "draft": false, "prerelease": false
        });
        for (code, exists) in [("already_exists", true), ("invalid", false)] {
            let _mock = Mock::given(method("POST"))
                .and(path("/repos/acme/shop/releases"))
                .and(body_json(&body))
                .respond_with(refusal(code))
                .expect(1)
                .mount_as_scoped(&server)
                .await;
            let err = client(&server)
                .create_release("acme/shop", &release)
                .await
                .unwrap_err();
            assert_eq!(err.already_exists(), exists, "{code}: {err}");
        }
    }

    #[tokio::test]
    async fn a_404_names_the_request_and_the_likely_cause_without_the_token() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/repos/acme/private/deployments"))
            .and(header("authorization", AUTH))
            .respond_with(ResponseTemplate::new(404).set_body_json(json!({
                "message": "Not Found",
                "documentation_url": "https://docs.github.com/rest/deployments/deployments#create-a-deployment",
                "status": "404"
            })))
            .expect(1)
            .mount(&server)
            .await;
        let err = client(&server)
            .create_deployment(
                "acme/private",
                &NewDeployment {
                    git_ref: "main".into(),
                    environment: "production".into(),
                    description: String::new(),
                    transient: false,
                    production: true,
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, GitHubError::Status { status: 404, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "GitHub answered POST /repos/acme/private/deployments with HTTP 404: Not Found \
             (GitHub also answers 404 when github.token may not read the repository)"
        );
        assert!(!format!("{err:?}").contains(TOKEN));
    }

    #[tokio::test]
    async fn a_422_carries_githubs_details() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/repos/acme/shop/deployments/7/statuses"))
            .and(header("authorization", AUTH))
            .respond_with(ResponseTemplate::new(422).set_body_json(json!({
                "message": "Validation Failed",
                "errors": [{
                    "resource": "DeploymentStatus",
                    "code": "custom",
                    "field": "environment_url",
                    "message": "environment_url must use http(s) scheme"
                }],
                "documentation_url": "https://docs.github.com/rest/deployments/statuses#create-a-deployment-status",
                "status": "422"
            })))
            .expect(1)
            .mount(&server)
            .await;
        let status = Status {
            state: StatusState::Success,
            environment_url: Some("ftp://shop".into()),
            log_url: None,
            description: "deployed".into(),
        };
        let err = client(&server)
            .set_status("acme/shop", 7, &status)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "GitHub answered POST /repos/acme/shop/deployments/7/statuses with HTTP 422: \
             Validation Failed (environment_url must use http(s) scheme)"
        );
    }

    #[tokio::test]
    async fn an_answer_that_echoes_the_token_is_masked() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/repos/acme/shop/branches"))
            .respond_with(ResponseTemplate::new(400).set_body_string(format!(
                "bad request; you sent authorization: Bearer {TOKEN}"
            )))
            .expect(1)
            .mount(&server)
            .await;
        let err = client(&server).branches("acme/shop").await.unwrap_err();
        let text = crate::error::chain(&err);
        assert!(
            text.contains("HTTP 400: bad request; you sent authorization: Bearer ****"),
            "{text}"
        );
        assert!(!format!("{text} {err:?}").contains(TOKEN));
    }

    #[tokio::test]
    async fn a_request_that_gets_no_answer_in_time_fails() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/repos/acme/shop/branches"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!([]))
                    .set_delay(Duration::from_secs(5)),
            )
            .expect(1)
            .mount(&server)
            .await;
        let github = client(&server).with_timeout(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let err = github.branches("acme/shop").await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(
            err.to_string(),
            "GitHub did not answer GET /repos/acme/shop/branches within 0.2s"
        );
    }

    #[tokio::test]
    async fn a_repo_that_is_not_owner_name_is_refused_before_any_request() {
        let server = MockServer::start().await;
        let github = client(&server);
        for repo in [
            "shop",
            "acme/",
            "/shop",
            "acme/shop/x",
            "acme/..",
            "acme/shop?x=1",
            "acme/sh op",
        ] {
            let err = github.branches(repo).await.unwrap_err();
            assert!(matches!(err, GitHubError::BadRepo(_)), "{repo}: {err:?}");
        }
        assert_eq!(server.received_requests().await.unwrap().len(), 0);
    }

    #[test]
    fn without_a_token_there_is_no_client() {
        let github = GitHub::from_config(&config("https://api.github.com", None)).unwrap();
        assert!(github.is_none());
    }

    #[test]
    fn shorten_counts_characters_not_bytes() {
        assert_eq!(shorten("déployé", 7), "déployé");
        assert_eq!(shorten("déployé!", 7), "déploy…");
    }
}
