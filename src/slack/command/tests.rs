use super::known::levenshtein;
use super::*;
use proptest::prelude::*;

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn known(apps: &[(&str, &[&str])], configured_default: Option<&str>) -> Known {
    Known {
        apps: apps
            .iter()
            .map(|(app, envs)| KnownApp {
                name: name(app),
                envs: envs.iter().map(|e| name(e)).collect(),
            })
            .collect(),
        configured_default: configured_default.map(name),
    }
}

/// One app, `shop`, with `staging` and `production`.
fn one() -> Known {
    known(&[("shop", &["staging", "production"])], None)
}

/// Two apps that both have `staging`; only `web` has `preview`.
fn two() -> Known {
    known(
        &[
            ("api", &["staging", "production"]),
            ("web", &["staging", "preview"]),
        ],
        None,
    )
}

fn two_with_default() -> Known {
    Known {
        configured_default: Some(name("api")),
        ..two()
    }
}

fn deploy(app: &str, git_ref: Option<&str>, env: &str) -> Command {
    Command::Deploy {
        app: name(app),
        git_ref: git_ref.map(|r| GitRef::parse(r).unwrap()),
        env: name(env),
    }
}

fn rollback(env: &str, to: Option<&str>) -> Command {
    Command::Rollback {
        app: name("shop"),
        env: name(env),
        to: to.map(str::to_owned),
    }
}

fn lock(reason: &str, duration: Option<u64>) -> Command {
    Command::Lock {
        app: name("shop"),
        env: name("production"),
        reason: reason.to_owned(),
        duration: duration.map(Duration::from_secs),
    }
}

#[test]
fn commands_and_refusals() {
    use Command::*;
    let (one, two, two_default, none) = (one(), two(), two_with_default(), Known::default());
    let keep = |secs| Keep {
        app: name("shop"),
        env: name("staging"),
        duration: Duration::from_secs(secs),
    };
    // Expected: `Ok(command)`, or `Err(substring of the refusal's message)`.
    #[rustfmt::skip]
    let cases: Vec<(&Known, &str, Result<Command, &str>)> = vec![
        // Deploys, with and without the `deploy` word; spacing and case.
        (&one, "feature/new-login to staging", Ok(deploy("shop", Some("feature/new-login"), "staging"))),
        (&one, "deploy feature/x to staging", Ok(deploy("shop", Some("feature/x"), "staging"))),
        (&one, "   deploy   feature/x    to   staging  ", Ok(deploy("shop", Some("feature/x"), "staging"))),
        (&one, "deploy\tfeature/x\tto\t\tstaging", Ok(deploy("shop", Some("feature/x"), "staging"))),
        (&one, "DEPLOY Release/V1 TO Production", Ok(deploy("shop", Some("Release/V1"), "production"))),
        (&one, "v1.4.0 to production", Ok(deploy("shop", Some("v1.4.0"), "production"))),
        (&one, "staging", Ok(deploy("shop", None, "staging"))),
        (&one, "Staging", Ok(deploy("shop", None, "staging"))),
        (&one, "deploy staging", Ok(deploy("shop", None, "staging"))),
        (&one, "shop/staging", Ok(deploy("shop", None, "staging"))),
        (&one, "shop main to production", Ok(deploy("shop", Some("main"), "production"))),
        (&one, "shop main to shop/production", Ok(deploy("shop", Some("main"), "production"))),
        (&one, "to to staging", Ok(deploy("shop", Some("to"), "staging"))),
        (&one, "deploy", Err("say what to deploy")),
        (&one, "feature/x staging", Err("to deploy, write `[APP] REF to ENV`")),
        (&one, "deploy a\u{7}b to staging", Err("bad ref: a ref name may not contain control characters")),
        // Apps and environments: app/env, ambiguity, defaults, unknown names, near misses.
        (&two, "main to staging", Err("several apps have an environment \"staging\": say which, as api/staging or web/staging")),
        (&two, "main to web/staging", Ok(deploy("web", Some("main"), "staging"))),
        (&two, "web main to staging", Ok(deploy("web", Some("main"), "staging"))),
        (&two, "main to preview", Ok(deploy("web", Some("main"), "preview"))),
        (&two_default, "main to staging", Ok(deploy("api", Some("main"), "staging"))),
        (&two_default, "main to web/staging", Ok(deploy("web", Some("main"), "staging"))),
        (&two, "api main to web/staging", Err("\"web/staging\" is not an environment of api")),
        (&two, "main to qa", Err("unknown environment \"qa\" (known: api/staging, api/production, web/staging, web/preview)")),
        (&one, "main to prod", Err("unknown environment \"prod\" (known: staging, production)")),
        (&one, "main to stagin", Err("Did you mean `staging`?")),
        (&two, "mobile main to staging", Err("unknown app \"mobile\" (known: api, web)")),
        (&two, "ap main to staging", Err("Did you mean `api`?")),
        (&two, "main to api/stagin", Err("unknown environment \"api/stagin\" (known: api/staging, api/production). Did you mean `api/staging`?")),
        (&two, "main to mobile/staging", Err("unknown app \"mobile\"")),
        (&one, "stagin", Err("unknown environment \"stagin\" (known: staging, production). Did you mean `staging`?")),
        (&none, "staging", Err("unknown environment \"staging\" (known: none configured)")),
        // Near misses of command words get usage and a suggestion.
        (&one, "rollbak staging", Err("Did you mean `rollback`?")),
        (&one, "rollbak staging", Err("Usage:")),
        (&one, "stauts", Err("\"stauts\" is not a command or an environment. Did you mean `status`?")),
        (&one, "hepl", Err("Did you mean `help`?")),
        // Rollback, status, envs, unlock, history.
        (&one, "rollback staging", Ok(rollback("staging", None))),
        (&one, "rollback  production  to  20240101120000-42", Ok(rollback("production", Some("20240101120000-42")))),
        (&one, "Rollback production TO 20240101120000-42", Ok(rollback("production", Some("20240101120000-42")))),
        (&one, "rollback production 20240101120000-42", Err("expected `rollback ENV [to RELEASE]`")),
        (&one, "rollback", Err("expected `rollback ENV [to RELEASE]`")),
        (&one, "rollback prod", Err("unknown environment \"prod\"")),
        (&one, "status", Ok(Status { env: None })),
        (&one, "status production", Ok(Status { env: Some(Lane { app: name("shop"), env: name("production") }) })),
        (&two, "status staging", Err("several apps have an environment \"staging\"")),
        (&one, "status a b", Err("expected `status [ENV]`")),
        (&one, "envs", Ok(Envs)),
        (&one, "envs please", Err("expected `envs`")),
        (&one, "unlock production", Ok(Unlock { app: name("shop"), env: name("production") })),
        (&one, "unlock", Err("expected `unlock ENV`")),
        (&one, "history production", Ok(History { app: name("shop"), env: name("production") })),
        (&one, "history", Err("expected `history ENV`")),
        // Lock: quoted (typed and smart quotes) or rest-of-line reasons, optional duration.
        (&one, "lock production release freeze", Ok(lock("release freeze", None))),
        (&one, "lock production   release \t freeze  ", Ok(lock("release \t freeze", None))),
        (&one, "lock production \"db migration\" for 2h", Ok(lock("db migration", Some(7200)))),
        (&one, "lock production 'db migration' for 30m", Ok(lock("db migration", Some(1800)))),
        (&one, "lock production “db migration” for 1d", Ok(lock("db migration", Some(86_400)))),
        (&one, "lock production ‘don’t deploy’", Ok(lock("don’t deploy", None))),
        (&one, "lock production 'don't deploy' FOR 2 hours", Ok(lock("don't deploy", Some(7200)))),
        (&one, "lock production \"waiting  for QA\"", Ok(lock("waiting  for QA", None))),
        (&one, "lock production waiting for QA", Ok(lock("waiting for QA", None))),
        (&one, "lock production db migration for 2h 30m", Ok(lock("db migration", Some(9000)))),
        (&one, "lock production db migration for 2x", Err("\"2x\" is not a duration")),
        (&one, "lock production \"freeze\" for soon", Err("\"soon\" is not a duration")),
        (&one, "lock production freeze for 0s", Err("longer than zero")),
        (&one, "lock production freeze for 99999999999999y", Err("is not a duration")),
        (&one, "lock production", Err("say why")),
        (&one, "lock production for 2h", Err("say why")),
        (&one, "lock production \"\"", Err("say why")),
        (&one, "lock production \"db migration", Err("never closed")),
        (&one, "lock production \"db\" migration", Err("only `for DURATION` may follow")),
        (&one, "lock prod freeze", Err("unknown environment \"prod\"")),
        // Cancel.
        (&one, "cancel 42", Ok(Cancel { job: 42 })),
        (&one, "cancel #42", Ok(Cancel { job: 42 })),
        (&one, "cancel #", Err("\"#\" is not a job number")),
        (&one, "cancel ##42", Err("is not a job number")),
        (&one, "cancel -1", Err("is not a job number")),
        (&one, "cancel 0", Err("is not a job number")),
        (&one, "cancel +42", Err("is not a job number")),
        (&one, "cancel 99999999999999999999", Err("is not a job number")),
        (&one, "cancel 42 43", Err("expected `cancel JOB`")),
        // Keep.
        (&one, "keep staging 2h", Ok(keep(7200))),
        (&one, "keep staging for 1d", Ok(keep(86_400))),
        (&one, "keep staging 2 hours", Ok(keep(7200))),
        (&one, "keep staging forever", Err("\"forever\" is not a duration")),
        (&one, "keep staging for", Err("\"\" is not a duration")),
        (&one, "keep staging", Err("expected `keep ENV DURATION`")),
        // Help.
        (&one, "help", Ok(Help)),
        (&one, "HELP me", Ok(Help)),
        (&one, "", Ok(Help)),
        (&one, " \t\n ", Ok(Help)),
        // Hostile text: refused, or kept exactly as typed (as data).
        (&one, "; rm -rf /", Err("not a command")),
        (&one, "staging\nrm -rf /", Err("not a command")),
        (&one, "main to staging; rm -rf /", Err("not a command")),
        (&one, "main to staging;", Err("unknown environment \"staging;\"")),
        (&one, "$(touch x) to staging", Err("unknown app \"$(touch\"")),
        (&one, "deploy $(touch-x) to staging", Ok(deploy("shop", Some("$(touch-x)"), "staging"))),
        (&one, "deploy `id`;reboot to staging", Ok(deploy("shop", Some("`id`;reboot"), "staging"))),
        (&one, "deploy ../../etc to staging", Ok(deploy("shop", Some("../../etc"), "staging"))),
        (&one, "rollback staging to $(reboot)", Ok(rollback("staging", Some("$(reboot)")))),
        (&one, "lock production $(touch x); rm -rf /", Ok(lock("$(touch x); rm -rf /", None))),
        (&one, "lock production \"a\nb; rm -rf /\"", Ok(lock("a\nb; rm -rf /", None))),
        (&one, "lock production $(touch x)\nrm -rf /", Ok(lock("$(touch x)\nrm -rf /", None))),
    ];
    assert!(cases.len() >= 40);
    for (known, text, expected) in cases {
        match (parse(text, known), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{text:?}"),
            (Err(refusal), Err(want)) => {
                let message = refusal.to_string();
                assert!(
                    message.contains(want),
                    "{text:?}: {message:?} lacks {want:?}"
                );
            }
            (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn ephemeral_environments_are_added_by_the_caller() {
    let mut known = one();
    assert!(matches!(
        parse("pr-7 to demo-xyz", &known),
        Err(Refusal::UnknownEnv { .. })
    ));
    known.apps[0].envs.push(name("demo-xyz"));
    assert_eq!(
        parse("pr-7 to demo-xyz", &known),
        Ok(deploy("shop", Some("pr-7"), "demo-xyz"))
    );
}

#[test]
fn default_app_is_the_configured_one_or_the_only_one() {
    assert_eq!(one().default_app(), Some(&name("shop")));
    assert_eq!(two().default_app(), None);
    assert_eq!(two_with_default().default_app(), Some(&name("api")));
}

#[test]
fn usage_refusals_end_with_the_usage() {
    let message = parse("rollbak staging", &one()).unwrap_err().to_string();
    assert!(message.ends_with(USAGE), "{message}");
    let message = parse("main to prod", &one()).unwrap_err().to_string();
    assert!(!message.contains(USAGE), "{message}");
}

#[test]
fn edit_distance() {
    assert_eq!(levenshtein("kitten", "sitting", 3), Some(3));
    assert_eq!(levenshtein("kitten", "sitting", 2), None);
    assert_eq!(levenshtein("rollbak", "rollback", 2), Some(1));
    assert_eq!(levenshtein("stauts", "status", 2), Some(2));
    assert_eq!(levenshtein("", "ab", 2), Some(2));
    assert_eq!(levenshtein("lock", "lock", 2), Some(0));
    assert_eq!(levenshtein("x", "history", 2), None);
    assert_eq!(
        nearest("Rolback", COMMAND_WORDS),
        Some("rollback".to_owned())
    );
    assert_eq!(nearest("xyz", COMMAND_WORDS), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn parse_never_panics(text in any::<String>()) {
        let _ = parse(&text, &two());
    }

    /// Text built from command words, names, quotes and odd whitespace reaches the deeper
    /// branches that random strings rarely do.
    #[test]
    fn parse_never_panics_on_near_commands(
        parts in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "deploy", "rollback", "status", "envs", "lock", "unlock", "cancel", "keep",
                    "history", "help", "to", "for", "api", "staging", "web/staging", "#42", "2h",
                    "\"", "'", "“", "”", "‘", "’", "\"x", "x\"", "/", "#", "\u{7}",
                ]).prop_map(str::to_owned),
                "\\PC{0,6}",
            ],
            0..8,
        ),
        separators in prop::collection::vec(
            prop::sample::select(vec![" ", "  ", "\t", "\n", "\u{a0}", ""]),
            8,
        ),
    ) {
        let text: String = parts.iter().zip(&separators).flat_map(|(p, s)| [p.as_str(), *s]).collect();
        let _ = parse(&text, &two());
        let _ = parse(&text, &one());
    }

    /// With one app, environments added to its list (ephemeral ones, which the Slack handler
    /// reads only when it must) never change what a text the configured ones parse means, even
    /// when an added name repeats a configured one in another case.
    #[test]
    fn with_one_app_added_environments_never_change_a_parse(
        parts in prop::collection::vec(
            prop::sample::select(vec![
                "deploy", "rollback", "status", "envs", "lock", "unlock", "keep", "history",
                "to", "for", "main", "2h", "\"why\"", "shop", "staging", "Staging",
                "production", "shop/staging", "shop/demo-x", "demo-x", "demo-y", "other/staging",
            ]),
            0..6,
        ),
        added in prop::collection::vec(
            prop::sample::select(vec!["demo-x", "demo-y", "staging", "production", "preview"]),
            0..4,
        ),
        configured_default in prop::option::of(Just("shop")),
    ) {
        let text = parts.join(" ");
        let configured = known(&[("shop", &["staging", "production"])], configured_default);
        let mut with_added = configured.clone();
        with_added.apps[0].envs.extend(added.iter().map(|e| name(e)));
        if let Ok(command) = parse(&text, &configured) {
            prop_assert_eq!(parse(&text, &with_added), Ok(command));
        }
    }

    /// A ref arrives as typed: whatever the characters, no escaping, trimming or rewriting.
    #[test]
    fn refs_are_kept_exactly(git_ref in "[^\\s\\p{Cc}]{1,40}") {
        let parsed = parse(&format!("deploy {git_ref} to staging"), &one());
        prop_assert_eq!(parsed, Ok(deploy("shop", Some(&git_ref), "staging")));
    }

    /// So does a quoted lock reason, newlines and all.
    #[test]
    fn quoted_reasons_are_kept_exactly(reason in "[^\"“”]{1,40}") {
        prop_assume!(!reason.trim().is_empty());
        let parsed = parse(&format!("lock production \"{reason}\""), &one());
        prop_assert_eq!(parsed, Ok(lock(&reason, None)));
    }
}
