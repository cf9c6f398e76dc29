//! Hand-written command-line parsing for `whalewatch`.

/// One engine to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineSpec {
    /// Docker or Podman at this URL (`None`: DOCKER_HOST or the default socket).
    Docker(Option<String>),
    /// containerd at this socket path.
    Containerd(String),
    /// A CRI engine (containerd's CRI plugin, cri-o) at this socket path.
    Cri(String),
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print the portfolio once.
    Ps {
        /// JSON instead of a table.
        json: bool,
    },
    /// Stream events.
    Events {
        /// JSON lines instead of human lines.
        json: bool,
        /// Exit after this many events.
        count: Option<u64>,
        /// Replay the journal after this sequence number instead of synthetic events.
        since: Option<u64>,
    },
    /// A live table.
    Watch,
    /// Print each engine's watcher metrics once.
    Stats {
        /// JSON instead of text.
        json: bool,
    },
    /// Print usage.
    Help,
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The engines, at least one (empty with `--auto`).
    pub engines: Vec<EngineSpec>,
    /// Discover the engines (and keep looking for new ones).
    pub auto: bool,
    /// With `--auto`: also watch a standalone containerd through its CRI plugin.
    pub with_cri: bool,
    /// The command.
    pub command: Command,
}

pub const USAGE: &str = "\
usage: whalewatch [--docker URL]... [--containerd PATH]... [--cri PATH]... COMMAND
       whalewatch --auto [--with-cri] COMMAND

Engines (several flags give several watchers; without any: DOCKER_HOST or the default socket):
  --docker URL        Docker or Podman API, e.g. unix:///var/run/docker.sock
  --containerd PATH   containerd socket, e.g. /run/containerd/containerd.sock
  --cri PATH          CRI socket, e.g. /run/containerd/containerd.sock
  --auto              discover the engines: processes named dockerd, containerd, crio,
                      podman and their sockets, DOCKER_HOST, CONTAINERD_ADDRESS,
                      CONTAINER_RUNTIME_ENDPOINT, well-known sockets; a containerd that
                      dockerd runs is watched through Docker; engines that start later
                      are attached (events, watch)
  --with-cri          with --auto: also watch a standalone containerd through CRI
                      (default: natively only)

Commands:
  ps [--json]                                 print the alive containers once
  events [--json] [--count N] [--since SEQ]   stream lifecycle events
  watch                                       live table, refreshed on every event
  stats [--json]                              each engine's watcher metrics
  help, --help                                this text
";

/// Parses `argv` without the program name. `Err` is the message for stderr.
pub fn parse(argv: &[String]) -> Result<Args, String> {
    let mut engines = Vec::new();
    let (mut auto, mut with_cri) = (false, false);
    let mut command: Option<String> = None;
    let (mut json, mut count, mut since) = (false, None, None);
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone().or_else(|| it.next().cloned()) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(format!("{name} needs a value")),
            }
        };
        match flag {
            "-h" | "--help" => {
                return Ok(Args {
                    engines,
                    auto,
                    with_cri,
                    command: Command::Help,
                })
            }
            "--docker" => engines.push(EngineSpec::Docker(Some(value("--docker")?))),
            "--containerd" => engines.push(EngineSpec::Containerd(value("--containerd")?)),
            "--cri" => engines.push(EngineSpec::Cri(value("--cri")?)),
            "--auto" => auto = true,
            "--with-cri" => with_cri = true,
            "--json" => json = true,
            "--count" => count = Some(number("--count", &value("--count")?)?),
            "--since" => since = Some(number("--since", &value("--since")?)?),
            f if f.starts_with('-') => return Err(format!("unknown flag {f} (see --help)")),
            word => {
                if let Some(c) = &command {
                    return Err(format!("unexpected argument {word} after command {c}"));
                }
                command = Some(word.to_string());
            }
        }
    }
    if auto && !engines.is_empty() {
        return Err("--auto does not go with --docker, --containerd or --cri".into());
    }
    if with_cri && !auto {
        return Err("--with-cri only goes with --auto".into());
    }
    if engines.is_empty() && !auto {
        engines.push(EngineSpec::Docker(None));
    }
    let command = match command.as_deref() {
        None => return Err("no command given (ps, events, watch, stats; see --help)".into()),
        Some("help") => Command::Help,
        Some("ps") => Command::Ps { json },
        Some("events") => Command::Events { json, count, since },
        Some("watch") => Command::Watch,
        Some("stats") => Command::Stats { json },
        Some(c) => {
            return Err(format!(
                "unknown command {c} (ps, events, watch, stats; see --help)"
            ))
        }
    };
    let events = matches!(command, Command::Events { .. });
    if !events && (count.is_some() || since.is_some()) {
        return Err("--count and --since only go with the events command".into());
    }
    if json && matches!(command, Command::Watch) {
        return Err("--json does not go with the watch command".into());
    }
    if auto && since.is_some() {
        return Err("--since does not go with --auto (sequence numbers are per engine)".into());
    }
    Ok(Args {
        engines,
        auto,
        with_cri,
        command,
    })
}

fn number(flag: &str, v: &str) -> Result<u64, String> {
    v.parse()
        .map_err(|_| format!("{flag} wants a non-negative number, not {v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn engines_and_commands() {
        let a = p(&["ps"]).unwrap();
        assert_eq!(a.engines, vec![EngineSpec::Docker(None)]);
        assert_eq!(a.command, Command::Ps { json: false });
        let a = p(&[
            "--docker",
            "unix:///a.sock",
            "--containerd=/c.sock",
            "--cri",
            "/r.sock",
            "events",
            "--json",
            "--count",
            "3",
            "--since=7",
        ])
        .unwrap();
        assert_eq!(
            a.engines,
            vec![
                EngineSpec::Docker(Some("unix:///a.sock".into())),
                EngineSpec::Containerd("/c.sock".into()),
                EngineSpec::Cri("/r.sock".into()),
            ]
        );
        assert_eq!(
            a.command,
            Command::Events {
                json: true,
                count: Some(3),
                since: Some(7)
            }
        );
        assert_eq!(p(&["watch"]).unwrap().command, Command::Watch);
        let a = p(&["--auto", "--with-cri", "stats", "--json"]).unwrap();
        assert!(a.auto && a.with_cri && a.engines.is_empty());
        assert_eq!(a.command, Command::Stats { json: true });
        let a = p(&["--auto", "ps"]).unwrap();
        assert!(a.auto && !a.with_cri);
        assert_eq!(p(&["--help", "bogus"]).unwrap().command, Command::Help);
    }

    #[test]
    fn errors() {
        for (args, needle) in [
            (&[][..], "no command"),
            (&["nope"][..], "unknown command nope"),
            (&["ps", "extra"][..], "unexpected argument extra"),
            (&["ps", "-x"][..], "unknown flag -x"),
            (&["--docker"][..], "--docker needs a value"),
            (&["--docker="][..], "--docker needs a value"),
            (&["events", "--count", "-1"][..], "--count wants"),
            (&["ps", "--count", "1"][..], "only go with the events"),
            (&["watch", "--json"][..], "--json does not go"),
            (
                &["--auto", "--docker", "unix:///a", "ps"][..],
                "--auto does not go",
            ),
            (
                &["--with-cri", "ps"][..],
                "--with-cri only goes with --auto",
            ),
            (
                &["--auto", "events", "--since", "3"][..],
                "--since does not go with --auto",
            ),
        ] {
            let e = p(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }
}
