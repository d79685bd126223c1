//! Decides what an interpreted event means for this config: which jobs to queue, or why none.
//! Pure: no I/O, so every rule is a unit test.

use crate::config::{App, Config};
use crate::domain::{GitRef, Sha};
use crate::ephemeral::{self, Identity};
use crate::gitops::{Push, PushTarget};
use crate::queue::{EphemeralEnv, NewJob};
use crate::store::JobKind;

#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    Jobs(Vec<NewJob>),
    Ignored(String),
}

pub fn plan_push(config: &Config, push: &Push) -> Plan {
    // A fork's pushes come from whoever owns the fork: its code never reaches an environment,
    // even if the fork's name is configured (configure the upstream repository instead).
    if push.fork {
        return Plan::Ignored(format!(
            "repository {} is a fork: slipway does not deploy forks",
            push.repo
        ));
    }
    let Some(app) = config.app_for_repo(&push.repo) else {
        return Plan::Ignored(format!("no app is configured for repository {}", push.repo));
    };
    let branch = match &push.target {
        PushTarget::Branch(branch) => branch,
        PushTarget::Tag(tag) => {
            let Some(sha) = &push.sha else {
                return Plan::Ignored(format!(
                    "tag {tag} was deleted: releases are left as they are"
                ));
            };
            return match (
                &app.releases,
                crate::releases::job(app, tag, sha, &push.pushed_by),
            ) {
                (_, Some(job)) => Plan::Jobs(vec![job]),
                (None, None) => Plan::Ignored(format!(
                    "tag {tag}: apps.{}.releases is not configured",
                    app.name
                )),
                (Some(_), None) => Plan::Ignored(format!(
                    "tag {tag} does not match apps.{}.releases.tags",
                    app.name
                )),
            };
        }
        PushTarget::Other(name) => {
            return Plan::Ignored(format!("ref {name} is neither a branch nor a tag"));
        }
    };
    if let Some(template) = ephemeral::template_for(app, branch.as_str()) {
        let id = match ephemeral::identify(template, branch.as_str()) {
            Ok(id) => id,
            Err(why) => return Plan::Ignored(why.to_string()),
        };
        return Plan::Jobs(vec![ephemeral_job(
            app,
            id,
            branch,
            push.sha.clone(),
            &push.pushed_by,
            "github",
        )]);
    }
    let Some(sha) = &push.sha else {
        return Plan::Ignored(format!("branch {branch} was deleted: nothing to deploy"));
    };
    let jobs: Vec<NewJob> = app
        .triggers_for(branch.as_str())
        .map(|trigger| NewJob {
            kind: JobKind::Deploy,
            app: app.name.clone(),
            env: trigger.deploy.clone(),
            git_ref: Some(branch.clone()),
            sha: Some(sha.clone()),
            requested_by: push.pushed_by.clone(),
            source: "github",
            target_release: None,
            ephemeral: None,
            supersede: !trigger.every,
            approval: app
                .environments
                .get(&trigger.deploy)
                .and_then(NewJob::approval_of),
        })
        .collect();
    if jobs.is_empty() {
        return Plan::Ignored(format!(
            "no trigger of app {} matches branch {branch}",
            app.name
        ));
    }
    Plan::Jobs(jobs)
}

/// The job that brings a branch's ephemeral environment to `sha`, or tears it down (`None`:
/// the branch is gone).
pub fn ephemeral_job(
    app: &App,
    id: Identity,
    branch: &GitRef,
    sha: Option<Sha>,
    requested_by: &str,
    source: &'static str,
) -> NewJob {
    NewJob {
        kind: if sha.is_some() {
            JobKind::Deploy
        } else {
            JobKind::Teardown
        },
        app: app.name.clone(),
        env: id.env,
        git_ref: Some(branch.clone()),
        sha,
        requested_by: requested_by.to_owned(),
        source,
        target_release: None,
        ephemeral: Some(EphemeralEnv {
            template: id.template,
            branch: branch.clone(),
            hostname: id.hostname,
        }),
        supersede: true,
        approval: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipway.toml");
        std::fs::write(
            &path,
            r#"
[github]
webhook_secret = "planner-test-secret"
[apps.shop]
repo = "acme/shop"
clone_url = "file:///srv/git/shop.git"
[apps.shop.environments.staging]
hosts = ["local"]
deploy_path = "/srv/shop"
[apps.shop.environments.qa]
hosts = ["local"]
deploy_path = "/srv/shop-qa"
[[apps.shop.triggers]]
push = "main"
deploy = "staging"
[[apps.shop.triggers]]
push = "release/*"
deploy = "qa"
[[apps.shop.triggers]]
push = "main"
deploy = "qa"
[apps.shop.ephemeral.demo]
branches = "demo/*"
hostname = "demo-{slug}.example.test"
ports = "20000-20099"
hosts = ["local"]
deploy_path = "/srv/demo"
"#,
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        (dir, config)
    }

    fn push(repo: &str, target: PushTarget, deleted: bool) -> Push {
        Push {
            repo: repo.into(),
            fork: false,
            target,
            sha: (!deleted).then(|| Sha::parse(&"1".repeat(40)).unwrap()),
            pushed_by: "octocat".into(),
        }
    }

    fn branch(name: &str) -> PushTarget {
        PushTarget::Branch(GitRef::parse(name).unwrap())
    }

    fn envs(plan: Plan) -> Vec<String> {
        match plan {
            Plan::Jobs(jobs) => jobs.into_iter().map(|j| j.env.to_string()).collect(),
            Plan::Ignored(why) => panic!("ignored: {why}"),
        }
    }

    #[test]
    fn triggers_pick_environments_in_order() {
        let (_d, c) = config();
        assert_eq!(
            envs(plan_push(&c, &push("acme/shop", branch("main"), false))),
            ["staging", "qa"]
        );
        assert_eq!(
            envs(plan_push(
                &c,
                &push("Acme/Shop", branch("release/1.2"), false)
            )),
            ["qa"]
        );
    }

    #[test]
    fn everything_else_is_ignored_with_a_reason() {
        let (_d, c) = config();
        let cases = [
            (
                push("acme/other", branch("main"), false),
                "no app is configured for repository acme/other",
            ),
            (
                push("acme/shop", branch("feature/x"), false),
                "no trigger of app shop matches branch feature/x",
            ),
            (
                push("acme/shop", branch("main"), true),
                "branch main was deleted: nothing to deploy",
            ),
            (
                push(
                    "acme/shop",
                    PushTarget::Tag(GitRef::parse("v1.0.0").unwrap()),
                    false,
                ),
                "tag v1.0.0: apps.shop.releases is not configured",
            ),
            (
                push("acme/shop", PushTarget::Other("refs/notes/x".into()), false),
                "ref refs/notes/x is neither a branch nor a tag",
            ),
        ];
        for (p, why) in cases {
            assert_eq!(plan_push(&c, &p), Plan::Ignored(why.into()));
        }
        // A fork is refused even under a configured name, for branches, tags and deletions.
        for target in [
            branch("main"),
            branch("demo/x"),
            PushTarget::Tag(GitRef::parse("v1.0.0").unwrap()),
        ] {
            for deleted in [false, true] {
                let p = Push {
                    fork: true,
                    ..push("acme/shop", target.clone(), deleted)
                };
                assert_eq!(
                    plan_push(&c, &p),
                    Plan::Ignored(
                        "repository acme/shop is a fork: slipway does not deploy forks".into()
                    )
                );
            }
        }
    }

    #[test]
    fn demo_branches_make_and_remove_ephemeral_environments() {
        let (_d, c) = config();
        let Plan::Jobs(jobs) = plan_push(&c, &push("acme/shop", branch("demo/Feature_X"), false))
        else {
            panic!("ignored")
        };
        let [job] = jobs.as_slice() else {
            panic!("{jobs:?}")
        };
        assert_eq!(job.kind, JobKind::Deploy);
        assert!(
            job.env.as_str().starts_with("demo-feature-x-"),
            "{}",
            job.env
        );
        let e = job.ephemeral.as_ref().unwrap();
        assert_eq!(e.branch.as_str(), "demo/Feature_X");
        assert_eq!(e.hostname, format!("{}.example.test", job.env));
        let Plan::Jobs(jobs) = plan_push(&c, &push("acme/shop", branch("demo/Feature_X"), true))
        else {
            panic!("ignored")
        };
        assert_eq!(
            (jobs[0].kind, &jobs[0].env, &jobs[0].sha),
            (JobKind::Teardown, &job.env, &None)
        );
        let Plan::Ignored(why) = plan_push(&c, &push("acme/shop", branch("demo/___"), false))
        else {
            panic!("planned")
        };
        assert!(why.contains("no letters or digits"), "{why}");
    }
}
