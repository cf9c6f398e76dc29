//! The `/proc` scan: engine processes (by `comm`) and the Unix sockets they listen on,
//! found by matching the socket inodes of `/proc/PID/fd/*` against the listening sockets
//! of `/proc/PID/net/unix` (the process's own network namespace).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Longest `/proc/PID/net/unix` read (bounded: a node with very many sockets is cut off
/// rather than exhausting memory).
const MAX_NET_UNIX: u64 = 16 << 20;

/// An engine process and the socket paths it listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EngineProcess {
    pub(crate) pid: u32,
    pub(crate) ppid: u32,
    pub(crate) comm: String,
    /// Listening stream sockets with a filesystem path, as the process bound them.
    pub(crate) sockets: Vec<PathBuf>,
    /// The `--config` (`-c`) file of a containerd, from its command line.
    pub(crate) config: Option<PathBuf>,
}

/// The process names discovery looks for.
pub(crate) const ENGINE_COMMS: &[&str] = &["dockerd", "containerd", "crio", "podman"];

/// Every process under `proc_root` whose `comm` is in [`ENGINE_COMMS`], with its listening
/// sockets. Processes that vanish or cannot be read mid-scan are skipped.
pub(crate) fn scan(proc_root: &Path) -> Vec<EngineProcess> {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    // Per network namespace (by the inode of /proc/PID/ns/net): inode -> path.
    let mut tables: HashMap<String, HashMap<u64, PathBuf>> = HashMap::new();
    let mut found = Vec::new();
    for pid in pids {
        let base = proc_root.join(pid.to_string());
        let Ok(comm) = std::fs::read_to_string(base.join("comm")) else {
            continue;
        };
        let comm = comm.trim().to_string();
        if !ENGINE_COMMS.contains(&comm.as_str()) {
            continue;
        }
        let ppid = std::fs::read_to_string(base.join("stat"))
            .ok()
            .and_then(|s| parse_ppid(&s))
            .unwrap_or(0);
        let netns = std::fs::read_link(base.join("ns/net"))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| format!("pid{pid}"));
        let table = tables.entry(netns).or_insert_with(|| {
            read_bounded(&base.join("net/unix")).map_or_else(HashMap::new, |t| listening(&t))
        });
        let mut sockets: Vec<PathBuf> = socket_inodes(&base.join("fd"))
            .into_iter()
            .filter_map(|ino| table.get(&ino).cloned())
            .collect();
        sockets.sort();
        sockets.dedup();
        let config = if comm == "containerd" {
            std::fs::read(base.join("cmdline"))
                .ok()
                .and_then(|c| config_of(&c))
        } else {
            None
        };
        found.push(EngineProcess {
            pid,
            ppid,
            comm,
            sockets,
            config,
        });
    }
    found
}

fn read_bounded(path: &Path) -> Option<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    let mut s = String::new();
    f.take(MAX_NET_UNIX).read_to_string(&mut s).ok()?;
    Some(s)
}

/// A dockerd's `--exec-root` (default `/var/run/docker`), from its command line.
pub(crate) fn exec_root(proc_root: &Path, pid: u32) -> String {
    let cmdline =
        std::fs::read(proc_root.join(pid.to_string()).join("cmdline")).unwrap_or_default();
    exec_root_of(&cmdline)
}

pub(crate) fn exec_root_of(cmdline: &[u8]) -> String {
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--exec-root=") {
            return v.trim_end_matches('/').to_string();
        }
        if a == "--exec-root" {
            match it.next() {
                Some(v) if !v.is_empty() => return v.trim_end_matches('/').to_string(),
                _ => break,
            }
        }
    }
    "/var/run/docker".into()
}

/// A containerd's config file (`--config PATH`, `--config=PATH`, `-c PATH`), from its
/// command line.
pub(crate) fn config_of(cmdline: &[u8]) -> Option<PathBuf> {
    let mut it = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned());
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
        if a == "--config" || a == "-c" {
            return it.next().filter(|v| !v.is_empty()).map(PathBuf::from);
        }
    }
    None
}

/// The parent pid from `/proc/PID/stat` (the field after the `)` that ends `comm`).
pub(crate) fn parse_ppid(stat: &str) -> Option<u32> {
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The inodes of the sockets among a process's open file descriptors.
fn socket_inodes(fd_dir: &Path) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(fd_dir) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|t| parse_socket_link(&t.to_string_lossy()))
        .collect()
}

/// `socket:[12345]` → 12345.
pub(crate) fn parse_socket_link(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Listening stream sockets with a filesystem path from a `/proc/net/unix` table:
/// inode → path. Malformed lines are skipped.
pub(crate) fn listening(table: &str) -> HashMap<u64, PathBuf> {
    const ACCEPTCON: u32 = 0x10000;
    const SOCK_STREAM: u32 = 1;
    const SS_UNCONNECTED: u32 = 1;
    let mut map = HashMap::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (Some(flags), Some(ty), Some(st), Ok(inode)) =
            (hex(f[3]), hex(f[4]), hex(f[5]), f[6].parse::<u64>())
        else {
            continue;
        };
        let path = f[7..].join(" ");
        if flags & ACCEPTCON == 0 || ty != SOCK_STREAM || st != SS_UNCONNECTED {
            continue;
        }
        if !path.starts_with('/') {
            continue; // abstract (@...) sockets have no path to dial
        }
        map.insert(inode, PathBuf::from(path));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_config_from_the_command_line() {
        let table: &[(&[u8], Option<&str>)] = &[
            (
                b"containerd\0--config\0/a/containerd.toml\0--log-level\0info",
                Some("/a/containerd.toml"),
            ),
            (b"containerd\0--config=/b/c.toml", Some("/b/c.toml")),
            (b"containerd\0-c\0/c.toml", Some("/c.toml")),
            (b"containerd\0--config", None),
            (b"containerd\0--config\0", None),
            (b"containerd", None),
            (b"", None),
            (b"\xff\0-c\0/\xfe.toml", Some("/\u{fffd}.toml")),
        ];
        for (cmdline, want) in table {
            assert_eq!(
                config_of(cmdline),
                want.map(PathBuf::from),
                "{}",
                String::from_utf8_lossy(cmdline)
            );
        }
    }

    #[test]
    fn net_unix_table() {
        let t = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            00000000e190f39a: 00000002 00000000 00010000 0001 01 15850 /run/docker.sock\n\
            000000006b483c9a: 00000002 00000000 00000000 0002 01 15832 @d2bbe\n\
            00000000521541fa: 00000003 00000000 00000000 0001 03 15842 /run/docker.sock\n\
            0000000000000001: 00000002 00000000 00010000 0001 01 777 /tmp/with space.sock\n\
            0000000000000002: 00000002 00000000 00010000 0001 01 778 @abstract\n\
            garbage line\n\
            0000000000000003: 00000002 00000000 zz 0001 01 779 /x\n";
        let m = listening(t);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[&15850], PathBuf::from("/run/docker.sock"));
        assert_eq!(m[&777], PathBuf::from("/tmp/with space.sock"));
    }

    #[test]
    fn stat_and_links() {
        assert_eq!(parse_ppid("42 (contain erd)) S 7 42 42 0"), Some(7));
        assert_eq!(parse_ppid("42 containerd S 7"), None);
        assert_eq!(parse_socket_link("socket:[15834]"), Some(15834));
        assert_eq!(parse_socket_link("pipe:[15834]"), None);
        assert_eq!(parse_socket_link("socket:[x]"), None);
        assert_eq!(
            exec_root_of(b"dockerd\0--exec-root\0/tmp/x/exec/\0-H\0a"),
            "/tmp/x/exec"
        );
        assert_eq!(exec_root_of(b"dockerd\0--exec-root=/e\0"), "/e");
        assert_eq!(exec_root_of(b"dockerd\0--exec-root\0"), "/var/run/docker");
    }
}
