//! A private podman API service for kill/restart tests: `podman system service` on its
//! own socket, over the SAME storage and configuration as the shared podman service (so
//! the containers are the shared ones; killing this service disturbs no other test).
//! Dropping it ends the service and removes its directory.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PrivatePodman {
    pub dir: PathBuf,
    pub url: String,
    child: Option<Child>,
}

impl PrivatePodman {
    /// Starts the service under `/tmp/ww-podman-<pid>-<n>` and waits until it answers.
    pub fn start() -> PrivatePodman {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = PathBuf::from(format!("/tmp/ww-podman-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("unix://{}/podman.sock", dir.display());
        let mut p = PrivatePodman {
            dir,
            url,
            child: None,
        };
        p.launch();
        p
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("podman.sock")
    }

    /// (Re)starts the service on the same socket and waits (bounded) until `/_ping`
    /// answers.
    pub fn launch(&mut self) {
        let _ = std::fs::remove_file(self.sock());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .unwrap();
        let mut cmd = Command::new("podman");
        cmd.args(["system", "service", "--time=0", &self.url])
            // A service whose working directory vanishes breaks conmon (engines.md).
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (var, conf) in [
            ("WHALEWATCHER_PODMAN_CONTAINERS_CONF", "CONTAINERS_CONF"),
            (
                "WHALEWATCHER_PODMAN_STORAGE_CONF",
                "CONTAINERS_STORAGE_CONF",
            ),
        ] {
            let path = std::env::var(var)
                .unwrap_or_else(|_| panic!("{var} is not set: source the engines' env file"));
            cmd.env(conf, path);
        }
        self.child = Some(cmd.spawn().expect("cannot run podman"));
        let end = Instant::now() + Duration::from_secs(60);
        while !self.answers() {
            if Instant::now() > end {
                let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
                panic!("private podman service did not come up; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// True when `GET /_ping` answers OK.
    pub fn answers(&self) -> bool {
        let Ok(mut s) = UnixStream::connect(self.sock()) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.") && out.ends_with("OK")
    }

    /// SIGKILLs the service, as when it crashes; the containers (under conmon) live on.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivatePodman {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
