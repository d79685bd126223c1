//! The remote commands of a deploy, built as data by pure functions and run by a target.
//! Every value in them goes through [`quote`]; nothing here touches a host.
//!
//! Layout on each host (Capistrano's, which operators know):
//! ```text
//! <deploy_path>/releases/<release_id>/   one directory per release, keyed by job
//! <deploy_path>/current -> releases/<id> switched by rename(2), so never half-switched
//! ```

use crate::deploy::shell::quote;
use crate::domain::ReleaseId;

/// First line every script prints, so the runner can kill its process group on a timeout.
pub const PID_PREFIX: &str = "slipway-pid ";

/// Paths of one environment on a host.
#[derive(Debug, Clone)]
pub struct Layout {
    root: String,
}

impl Layout {
    pub fn new(deploy_path: &str) -> Self {
        Self {
            root: deploy_path.trim_end_matches('/').to_owned(),
        }
    }

    pub fn release_dir(&self, release: &ReleaseId) -> String {
        format!("{}/releases/{release}", self.root)
    }

    pub fn current(&self) -> String {
        format!("{}/current", self.root)
    }
}

/// A marker no step output contains by accident: a per-run random nonce.
pub fn marker() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("~slipway-{:016x}", h.finish())
}

/// Chains script bodies into one: each runs in a subshell between `<marker> s <i>` and
/// `<marker> e <i> <exit code>` lines; the first that fails ends the script with its code.
pub fn chain(marker: &str, bodies: &[&str]) -> String {
    let m = quote(marker);
    let mut script = String::new();
    for (i, body) in bodies.iter().enumerate() {
        script.push_str(&format!(
            "printf '%s s {i}\\n' {m}\n(\n{body}\n)\nrc=$?\nprintf '%s e {i} %s\\n' {m} \"$rc\"\n[ \"$rc\" -eq 0 ] || exit \"$rc\"\n"
        ));
    }
    script
}

/// Wraps a script body: print our pid, then merge stderr into stdout so lines keep their order.
pub fn with_pid_header(body: &str) -> String {
    format!("printf '{PID_PREFIX}%s\\n' \"$$\"; exec 2>&1\n{body}")
}

/// Unpacks a tar archive from stdin into a fresh release directory.
/// A leftover directory of an earlier attempt of the same job is replaced.
pub fn ship(layout: &Layout, release: &ReleaseId) -> String {
    let dir = quote(&layout.release_dir(release));
    format!("set -e\nrm -rf -- {dir}\nmkdir -p -- {dir}\ntar -x -f - -C {dir}")
}

/// Runs one operator step in the release directory with the deploy's variables exported.
pub fn step(layout: &Layout, release: &ReleaseId, vars: &[(&str, &str)], command: &str) -> String {
    let mut script = format!("set -e\ncd -- {}\n", quote(&layout.release_dir(release)));
    for (name, value) in vars {
        debug_assert!(name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
        script.push_str(&format!("export {name}={}\n", quote(value)));
    }
    script.push_str(&format!("exec sh -c {}", quote(command)));
    script
}

/// Points `current` at the release atomically (a new symlink renamed over the old one), then
/// prunes releases beyond the newest `keep`, never the live one nor the one it replaced (what a
/// rollback goes back to, which after an earlier rollback can be older than `keep` allows).
pub fn switch(layout: &Layout, release: &ReleaseId, keep: usize) -> String {
    let root = quote(&layout.root);
    let target = quote(&format!("releases/{release}"));
    let tmp = quote(&format!(".current.{release}"));
    format!(
        "set -e\ncd -- {root}\n\
         prev=$(basename \"$(readlink current 2>/dev/null || echo none)\")\n\
         ln -sfn {target} {tmp}\n\
         mv -fT {tmp} current\n\
         live=$(basename \"$(readlink current)\")\n\
         cd releases\n\
         ls -1 | sort -r | tail -n +{skip} | while IFS= read -r old; do\n\
         \x20 if [ \"$old\" != \"$live\" ] && [ \"$old\" != \"$prev\" ]; then rm -rf -- \"$old\"; fi\n\
         done",
        skip = keep + 1
    )
}

/// Prints the release `current` points to (nothing when there is none yet).
pub fn read_current(layout: &Layout) -> String {
    format!(
        "l=$(readlink -- {} 2>/dev/null) || exit 0\nbasename \"$l\"",
        quote(&layout.current())
    )
}

/// Fails with a clear message unless the release is still on the host (a rollback needs it).
pub fn verify_release(layout: &Layout, release: &ReleaseId) -> String {
    let dir = quote(&layout.release_dir(release));
    format!(
        "if [ -d {dir} ]; then exit 0; fi\n\
         echo \"release {release} is not on this host (pruned?); releases kept here:\"\n\
         ls -1 -- {} 2>/dev/null | sort -r\nexit 1",
        quote(&format!("{}/releases", layout.root))
    )
}

/// Writes a proxy's upstream file, checks the proxy config, and reloads it. If the check fails,
/// the previous file is put back (so the running proxy keeps serving what it served).
pub fn proxy_switch(file: &str, content: &str, check: &str, reload: &str) -> String {
    let f = quote(file);
    format!(
        "set -e\nf={f}\nmkdir -p -- \"$(dirname -- \"$f\")\"\n\
         if [ -f \"$f\" ]; then cp -p -- \"$f\" \"$f.slipway-prev\"; else rm -f -- \"$f.slipway-prev\"; fi\n\
         printf '%s' {content} > \"$f.slipway-new\"\nmv -f -- \"$f.slipway-new\" \"$f\"\n\
         if ! sh -c {check}; then\n\
         \x20 if [ -f \"$f.slipway-prev\" ]; then mv -f -- \"$f.slipway-prev\" \"$f\"; else rm -f -- \"$f\"; fi\n\
         \x20 echo 'slipway: proxy config check failed; the previous upstream is restored'\n\
         \x20 exit 1\nfi\nsh -c {reload}",
        content = quote(content),
        check = quote(check),
        reload = quote(reload),
    )
}

/// Takes a route file away, checks the proxy config and reloads the proxy. If the check fails
/// without the file, the file is put back and the script fails (the proxy keeps serving).
/// Nothing to do when the file is not there.
pub fn remove_route(file: &str, check: &str, reload: &str) -> String {
    format!(
        "set -e\nf={f}\n[ -f \"$f\" ] || exit 0\nmv -f -- \"$f\" \"$f.slipway-prev\"\n\
         if ! sh -c {check}; then\n\
         \x20 mv -f -- \"$f.slipway-prev\" \"$f\"\n\
         \x20 echo 'slipway: proxy config check failed without the route; it is restored'\n\
         \x20 exit 1\nfi\nrm -f -- \"$f.slipway-prev\"\nsh -c {reload}",
        f = quote(file),
        check = quote(check),
        reload = quote(reload),
    )
}

/// Lists what ephemeral environments left on a host: `dir <name>` for each directory under
/// `root` whose name starts with `dir_prefix`, and `route <path>` for each file matching
/// `<route_prefix>*<route_suffix>`.
pub fn list_environments(
    root: &str,
    dir_prefix: &str,
    route_prefix: &str,
    route_suffix: &str,
) -> String {
    format!(
        "for d in {root}/{dir_prefix}*/; do [ -d \"$d\" ] && printf 'dir %s\\n' \"$(basename -- \"$d\")\"; done\n\
         for f in {route_prefix}*{route_suffix}; do [ -f \"$f\" ] && printf 'route %s\\n' \"$f\"; done\ntrue",
        root = quote(root.trim_end_matches('/')),
        dir_prefix = quote(dir_prefix),
        route_prefix = quote(route_prefix),
        route_suffix = quote(route_suffix),
    )
}

/// Deletes an environment's whole directory (releases, `current`, whatever its steps left).
pub fn remove_environment(layout: &Layout) -> String {
    remove_directory(&layout.root)
}

/// Deletes a directory and everything in it.
pub fn remove_directory(path: &str) -> String {
    format!("rm -rf -- {}", quote(path))
}

/// Fetches a health URL from the host itself and prints the body, then `slipway-status:<code>`.
pub fn probe(url: &str, timeout_secs: u64) -> String {
    format!(
        "curl -sS --max-time {timeout_secs} -o - -w '\nslipway-status:%{{http_code}}\n' -- {}",
        quote(url)
    )
}

/// Removes a release that never went live (its steps failed).
pub fn discard(layout: &Layout, release: &ReleaseId) -> String {
    format!("rm -rf -- {}", quote(&layout.release_dir(release)))
}

/// Signals a script's whole process group: TERM, then KILL for what ignored it.
pub fn kill_group(pid: u32) -> String {
    format!("kill -s TERM -- -{pid} 2>/dev/null\nsleep 1\nkill -s KILL -- -{pid} 2>/dev/null\ntrue")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn release(id: i64) -> ReleaseId {
        ReleaseId::new(
            chrono::DateTime::from_timestamp(1_700_000_000 + id, 0).unwrap(),
            id,
        )
    }

    fn sh(script: &str, stdin: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    fn tar_of(dir: &Path) -> Vec<u8> {
        Command::new("tar")
            .arg("-c")
            .arg("-C")
            .arg(dir)
            .arg(".")
            .output()
            .unwrap()
            .stdout
    }

    #[test]
    fn hostile_values_are_quoted_in_steps() {
        let layout = Layout::new("/srv/app/");
        let script = step(
            &layout,
            &release(1),
            &[("SLIPWAY_REF", "demo/$(touch /tmp/pwned)")],
            "./build",
        );
        assert!(script.contains("export SLIPWAY_REF='demo/$(touch /tmp/pwned)'"));
        assert!(script.contains("cd -- '/srv/app/releases/20231114221321-1'"));
        assert!(script.ends_with("exec sh -c './build'"));
    }

    #[test]
    fn ship_step_switch_and_prune_work_on_a_real_shell() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("app.txt"), "hello").unwrap();
        let root = tmp.path().join("deploy it's here");
        let layout = Layout::new(root.to_str().unwrap());

        for id in 1..=4 {
            let out = sh(&ship(&layout, &release(id)), &tar_of(&src));
            assert!(out.status.success(), "{out:?}");
            let vars = [("SLIPWAY_REF", "demo/`id`"), ("SLIPWAY_RELEASE", "r")];
            let out = sh(
                &step(
                    &layout,
                    &release(id),
                    &vars,
                    "printf %s \"$SLIPWAY_REF\" > ref.txt",
                ),
                b"",
            );
            assert!(out.status.success(), "{out:?}");
            let out = sh(&switch(&layout, &release(id), 2), b"");
            assert!(out.status.success(), "{out:?}");
            let current = std::fs::read_link(root.join("current")).unwrap();
            assert_eq!(current, Path::new("releases").join(release(id).as_str()));
        }
        let live = root.join("current");
        assert_eq!(
            std::fs::read_to_string(live.join("app.txt")).unwrap(),
            "hello"
        );
        assert_eq!(
            std::fs::read_to_string(live.join("ref.txt")).unwrap(),
            "demo/`id`"
        );
        let mut left: Vec<_> = std::fs::read_dir(root.join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [release(3).to_string(), release(4).to_string()]);
        assert!(
            !root
                .join(".current.".to_owned() + release(4).as_str())
                .exists()
        );

        let out = sh(&discard(&layout, &release(3)), b"");
        assert!(out.status.success());
        assert!(!root.join("releases").join(release(3).as_str()).exists());
    }

    #[test]
    fn read_current_and_verify_release() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path().to_str().unwrap());
        let out = sh(&read_current(&layout), b"");
        assert!(out.status.success());
        assert!(out.stdout.is_empty());
        std::fs::create_dir_all(tmp.path().join("releases").join(release(1).as_str())).unwrap();
        assert!(sh(&switch(&layout, &release(1), 5), b"").status.success());
        let out = sh(&read_current(&layout), b"");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            release(1).as_str()
        );
        assert!(
            sh(&verify_release(&layout, &release(1)), b"")
                .status
                .success()
        );
        let out = sh(&verify_release(&layout, &release(2)), b"");
        assert!(!out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("is not on this host (pruned?)"), "{text}");
        assert!(text.contains(release(1).as_str()), "{text}");
    }

    #[test]
    fn proxy_switch_restores_the_old_file_when_the_check_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("up stream.conf");
        let f = file.to_str().unwrap();
        assert!(
            sh(&proxy_switch(f, "server a;\n", "true", "true"), b"")
                .status
                .success()
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "server a;\n");
        let out = sh(&proxy_switch(f, "server b;\n", "false", "true"), b"");
        assert!(!out.status.success());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "server a;\n");
        let marker = tmp.path().join("reloaded");
        let reload = format!("touch {}", quote(marker.to_str().unwrap()));
        assert!(
            sh(&proxy_switch(f, "server c;\n", "true", &reload), b"")
                .status
                .success()
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "server c;\n");
        assert!(marker.exists());
    }

    #[test]
    fn remove_route_reloads_or_puts_the_file_back() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("demo x.conf");
        let f = file.to_str().unwrap();
        let marker = tmp.path().join("reloaded");
        let reload = format!("touch {}", quote(marker.to_str().unwrap()));
        // Missing file: nothing to do, no reload.
        assert!(sh(&remove_route(f, "false", &reload), b"").status.success());
        assert!(!marker.exists());
        std::fs::write(&file, "server {}\n").unwrap();
        let out = sh(&remove_route(f, "false", &reload), b"");
        assert!(!out.status.success());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "server {}\n");
        assert!(!marker.exists());
        assert!(sh(&remove_route(f, "true", &reload), b"").status.success());
        assert!(!file.exists() && marker.exists());
        let root = tmp.path().join("env dir");
        std::fs::create_dir_all(root.join("releases/1")).unwrap();
        let layout = Layout::new(root.to_str().unwrap());
        assert!(sh(&remove_environment(&layout), b"").status.success());
        assert!(!root.exists());
    }

    #[test]
    fn list_environments_names_directories_and_route_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("envs");
        for d in ["demo-a", "demo-b c", "other"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("demo-file"), "").unwrap();
        let routes = tmp.path().join("routes");
        std::fs::create_dir_all(&routes).unwrap();
        for f in [
            "x-demo-a.conf",
            "x-demo-z.conf",
            "x-demo-a.conf.slipway-prev",
            "y.conf",
        ] {
            std::fs::write(routes.join(f), "").unwrap();
        }
        let prefix = format!("{}/x-", routes.display());
        let script = list_environments(root.to_str().unwrap(), "demo-", &prefix, ".conf");
        let out = sh(&script, b"");
        assert!(out.status.success());
        let mut lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "dir demo-a".to_owned(),
                "dir demo-b c".to_owned(),
                format!("route {prefix}demo-a.conf"),
                format!("route {prefix}demo-z.conf"),
            ]
        );
        // Nothing there at all: no output, success.
        let none = list_environments("/nonexistent", "demo-", "/nonexistent/x-", ".conf");
        let out = sh(&none, b"");
        assert!(out.status.success() && out.stdout.is_empty());
    }

    #[test]
    fn prune_never_removes_the_live_release() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path().to_str().unwrap());
        for id in [5, 6, 7] {
            std::fs::create_dir_all(tmp.path().join("releases").join(release(id).as_str()))
                .unwrap();
        }
        let exists = |id: i64| {
            tmp.path()
                .join("releases")
                .join(release(id).as_str())
                .exists()
        };
        let switch_to = |id: i64| {
            let out = sh(&switch(&layout, &release(id), 1), b"");
            assert!(out.status.success(), "{out:?}");
        };
        // keep = 1: live on 6 keeps 7 (newest) and 6 (live); 5 goes.
        switch_to(6);
        assert!(!exists(5) && exists(6) && exists(7));
        // Switching to 7 keeps 6 too, though it is beyond `keep`: it is what a rollback wants.
        switch_to(7);
        assert!(exists(6) && exists(7));
        // One switch later 6 is neither live, replaced, nor newest: pruned.
        std::fs::create_dir_all(tmp.path().join("releases").join(release(8).as_str())).unwrap();
        switch_to(8);
        assert!(!exists(6) && exists(7) && exists(8));
    }
}
