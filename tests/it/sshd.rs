//! Real OpenSSH hosts for tests. Each host is an `sshd -D` on its own random loopback address,
//! with its own host key, started under `unshare --mount` with a private directory bind-mounted
//! on `/srv`, so two hosts have two different `/srv`s as two machines would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub struct Host {
    /// `root@127.x.y.z:2222`
    pub spec: String,
    /// What the host sees as `/srv`.
    pub srv: PathBuf,
    child: Child,
}

impl Host {
    /// The host's own loopback address.
    pub fn addr(&self) -> &str {
        let after_at = self
            .spec
            .split_once('@')
            .map_or(self.spec.as_str(), |(_, h)| h);
        after_at.rsplit_once(':').map_or(after_at, |(a, _)| a)
    }

    /// The file system as the host sees it (its own mount namespace, through `/proc`): what
    /// `/srv` holds when a test mounted something over part of it inside the host.
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.child.id()))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Apps the tests started on the host leave pid files in /srv: stop them with the host.
        kill_pidfiles(&self.srv);
    }
}

fn kill_pidfiles(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            kill_pidfiles(&path);
        } else if path.extension().is_some_and(|e| e == "pid")
            && let Ok(pid) = std::fs::read_to_string(&path)
        {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

/// A client key, a known_hosts file, and hosts that trust the key.
pub struct Fleet {
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub hosts: Vec<Host>,
}

const PORT: u16 = 2222;

impl Fleet {
    pub fn start(dir: &Path, count: usize) -> Self {
        Self::start_with(dir, count, "true")
    }

    /// As [`Fleet::start`], running the shell command `setup` inside each host's mount
    /// namespace (after `/srv` is mounted, before sshd starts): e.g. a small tmpfs over a
    /// directory of `/srv`, gone with the host.
    pub fn start_with(dir: &Path, count: usize, setup: &str) -> Self {
        std::fs::create_dir_all("/run/sshd").unwrap();
        let key = dir.join("id_ed25519");
        keygen(&key);
        let authorized = dir.join("authorized_keys");
        std::fs::copy(key.with_extension("pub"), &authorized).unwrap();
        let known_hosts = dir.join("known_hosts");
        let mut known = String::new();
        let mut hosts = Vec::new();
        for n in 0..count {
            let host_dir = dir.join(format!("host{n}"));
            let srv = host_dir.join("srv");
            std::fs::create_dir_all(&srv).unwrap();
            let host_key = host_dir.join("ssh_host_ed25519_key");
            keygen(&host_key);
            let (addr, child) = start_sshd(&host_dir, &host_key, &authorized, &srv, setup);
            let public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
            let mut fields = public.split_whitespace();
            known.push_str(&format!(
                "[{addr}]:{PORT} {} {}\n",
                fields.next().unwrap(),
                fields.next().unwrap()
            ));
            hosts.push(Host {
                spec: format!("root@{addr}:{PORT}"),
                srv,
                child,
            });
        }
        std::fs::write(&known_hosts, known).unwrap();
        Self {
            key,
            known_hosts,
            hosts,
        }
    }

    /// The TOML `hosts = [...]` value.
    pub fn hosts_toml(&self) -> String {
        let specs: Vec<_> = self
            .hosts
            .iter()
            .map(|h| format!("\"{}\"", h.spec))
            .collect();
        format!("[{}]", specs.join(", "))
    }

    /// The TOML `ssh = {...}` value.
    pub fn ssh_toml(&self) -> String {
        format!(
            "{{ key = \"{}\", known_hosts = \"{}\", connect_timeout = \"5s\" }}",
            self.key.display(),
            self.known_hosts.display()
        )
    }
}

pub fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "slipway-test", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen: {out:?}");
}

/// A loopback address no other test of any process is likely to hold: 127.0.0.0/8 has 16M.
fn random_loopback() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    let r = h.finish();
    format!(
        "127.{}.{}.{}",
        (r >> 8) as u8 % 250 + 2,
        (r >> 16) as u8,
        (r >> 24) as u8 % 250 + 2
    )
}

fn start_sshd(
    dir: &Path,
    host_key: &Path,
    authorized: &Path,
    srv: &Path,
    setup: &str,
) -> (String, Child) {
    for _ in 0..20 {
        let addr = random_loopback();
        // Taken by someone else (another test's host): try another address.
        if std::net::TcpListener::bind((addr.as_str(), PORT)).is_err() {
            continue;
        }
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {addr}:{PORT}\nHostKey {}\nPidFile none\nAuthorizedKeysFile {}\n\
                 StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nPermitRootLogin prohibit-password\nMaxSessions 64\nMaxStartups 64\n\
                 LogLevel ERROR\n",
                host_key.display(),
                authorized.display()
            ),
        )
        .unwrap();
        let script = format!(
            "mount --bind '{}' /srv && {setup} && exec /usr/sbin/sshd -D -e -f '{}'",
            srv.display(),
            config.display()
        );
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unshare + sshd start");
        for _ in 0..100 {
            if std::net::TcpStream::connect((addr.as_str(), PORT)).is_ok() {
                return (addr, child);
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("could not start sshd");
}
