//! A real nginx for blue/green tests: its own config directory, listening on a test host's
//! loopback address, with its upstream read from a file the deploy writes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Nginx {
    pub conf: PathBuf,
    pub url: String,
    child: Child,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Starts nginx on `addr:port` proxying to the servers listed in `upstream_file` (created
    /// with a placeholder if missing, so nginx can start before the first deploy).
    pub fn start(dir: &Path, addr: &str, port: u16, upstream_file: &Path) -> Self {
        let dir = dir.join("nginx");
        std::fs::create_dir_all(&dir).unwrap();
        if !upstream_file.exists() {
            std::fs::create_dir_all(upstream_file.parent().unwrap()).unwrap();
            std::fs::write(upstream_file, "server 127.0.0.1:1 down;\n").unwrap();
        }
        let servers = format!(
            "upstream app {{ include {}; }}\n\
             server {{ listen {addr}:{port}; location / {{ proxy_pass http://app; }} }}\n",
            upstream_file.display()
        );
        Self::launch(&dir, addr, port, &servers)
    }

    /// Starts nginx on `addr:port` with the server blocks of `routes/*.conf` (none at first);
    /// a request for any other hostname gets 404.
    pub fn with_routes(dir: &Path, addr: &str, port: u16, routes: &Path) -> Self {
        let dir = dir.join("nginx");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(routes).unwrap();
        let servers = format!(
            "server {{ listen {addr}:{port} default_server; return 404; }}\ninclude {}/*.conf;\n",
            routes.display()
        );
        Self::launch(&dir, addr, port, &servers)
    }

    fn launch(dir: &Path, addr: &str, port: u16, servers: &str) -> Self {
        let conf = dir.join("nginx.conf");
        let d = dir.display();
        std::fs::write(
            &conf,
            format!(
                "pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nworker_processes 1;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
                 {servers}}}\n"
            ),
        )
        .unwrap();
        let mut child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts");
        for _ in 0..100 {
            if std::net::TcpStream::connect((addr, port)).is_ok() {
                return Self {
                    conf,
                    url: format!("http://{addr}:{port}/"),
                    child,
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("nginx did not start; see {d}/error.log");
    }

    /// The `check` and `reload` commands for this nginx.
    pub fn commands(&self) -> (String, String) {
        let c = self.conf.display();
        (
            format!("nginx -t -q -c {c}"),
            format!("nginx -s reload -c {c}"),
        )
    }
}
