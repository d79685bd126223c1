use super::*;
use crate::store::EnvState;

fn config(triggers: &str) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slipway.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[github]
webhook_secret = "execute-test-secret"
[apps.shop]
repo = "acme/shop"
clone_url = "file:///srv/git/shop.git"
[apps.shop.environments.staging]
hosts = ["local"]
deploy_path = "/srv/shop"
[apps.shop.environments.qa]
hosts = ["local"]
deploy_path = "/srv/shop-qa"
{triggers}
"#
        ),
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    (dir, config)
}

fn stat(env: &str) -> Target {
    Target::Static {
        app: Name::parse("shop").unwrap(),
        env: Name::parse(env).unwrap(),
    }
}

#[test]
fn the_default_ref_is_one_literal_branch() {
    let (_dir, c) = config(
        "[[apps.shop.triggers]]\npush = \"main\"\ndeploy = \"staging\"\n\
         [[apps.shop.triggers]]\npush = \"main\"\ndeploy = \"staging\"\n\
         [[apps.shop.triggers]]\npush = \"release/*\"\ndeploy = \"qa\"\n",
    );
    let app = c.app("shop").unwrap();
    assert_eq!(default_ref(app, &stat("staging")).unwrap().as_str(), "main");
    let glob = default_ref(app, &stat("qa")).unwrap_err();
    assert_eq!(
        glob,
        "shop/qa is deployed from the branches matching `release/*`, not from one branch: \
         say which ref, as in `/deploy REF to qa`."
    );

    let (_dir, c) = config(
        "[[apps.shop.triggers]]\npush = \"main\"\ndeploy = \"qa\"\n\
         [[apps.shop.triggers]]\npush = \"develop\"\ndeploy = \"qa\"\n",
    );
    let app = c.app("shop").unwrap();
    assert_eq!(
        default_ref(app, &stat("qa")).unwrap_err(),
        "shop/qa is deployed from several branches (`main`, `develop`): say which ref, as \
         in `/deploy REF to qa`."
    );
    assert_eq!(
        default_ref(app, &stat("staging")).unwrap_err(),
        "No trigger deploys shop/staging, so it has no default ref: say which ref, as in \
         `/deploy REF to staging`."
    );

    let row = EphemeralRow {
        id: 1,
        app: "shop".into(),
        template: "demo".into(),
        env: "demo-x".into(),
        branch: "demo/x".into(),
        hostname: "demo-x.example.test".into(),
        port: None,
        state: EnvState::Live,
        sha: None,
        last_push_at: 0,
        keep_until: None,
        warned_at: None,
        created_at: 0,
        updated_at: 0,
    };
    let ephemeral = Target::Ephemeral {
        app: Name::parse("shop").unwrap(),
        env: Name::parse("demo-x").unwrap(),
        row: Box::new(row),
    };
    assert_eq!(default_ref(app, &ephemeral).unwrap().as_str(), "demo/x");
}

#[test]
fn known_names_configured_and_ephemeral_environments() {
    let (_dir, c) = config("");
    let row = |env: &str| EphemeralRow {
        id: 1,
        app: "shop".into(),
        template: "demo".into(),
        env: env.into(),
        branch: "demo/x".into(),
        hostname: "demo-x.example.test".into(),
        port: None,
        state: EnvState::Live,
        sha: None,
        last_push_at: 0,
        keep_until: None,
        warned_at: None,
        created_at: 0,
        updated_at: 0,
    };
    let known = known(&c, &[row("demo-x")]);
    let envs: Vec<&str> = known.apps[0].envs.iter().map(Name::as_str).collect();
    assert_eq!(envs, ["qa", "staging", "demo-x"]);
    assert_eq!(
        crate::overview::lanes(&c, &[row("demo-x")]),
        [
            ("shop".to_owned(), "qa".to_owned()),
            ("shop".to_owned(), "staging".to_owned()),
            ("shop".to_owned(), "demo-x".to_owned())
        ]
    );
}
