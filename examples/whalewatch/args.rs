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
    /// Print usage.
    Help,
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The engines, at least one.
    pub engines: Vec<EngineSpec>,
    /// The command.
    pub command: Command,
}

pub const USAGE: &str = "\
usage: whalewatch [--docker URL]... [--containerd PATH]... [--cri PATH]... [--auto] COMMAND

Engines (several flags give several watchers; without any: DOCKER_HOST or the default socket):
  --docker URL        Docker or Podman API, e.g. unix:///var/run/docker.sock
  --containerd PATH   containerd socket, e.g. /run/containerd/containerd.sock
  --cri PATH          CRI socket, e.g. /run/containerd/containerd.sock
  --auto              discover engines (not supported yet)

Commands:
  ps [--json]                                 print the alive containers once
  events [--json] [--count N] [--since SEQ]   stream lifecycle events
  watch                                       live table, refreshed on every event
  help, --help                                this text
";

/// Parses `argv` without the program name. `Err` is the message for stderr.
pub fn parse(argv: &[String]) -> Result<Args, String> {
    let mut engines = Vec::new();
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
                    command: Command::Help,
                })
            }
            "--docker" => engines.push(EngineSpec::Docker(Some(value("--docker")?))),
            "--containerd" => engines.push(EngineSpec::Containerd(value("--containerd")?)),
            "--cri" => engines.push(EngineSpec::Cri(value("--cri")?)),
            "--auto" => return Err("--auto is not supported yet".into()),
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
    if engines.is_empty() {
        engines.push(EngineSpec::Docker(None));
    }
    let command = match command.as_deref() {
        None => return Err("no command given (ps, events, watch; see --help)".into()),
        Some("help") => Command::Help,
        Some("ps") => Command::Ps { json },
        Some("events") => Command::Events { json, count, since },
        Some("watch") => Command::Watch,
        Some(c) => {
            return Err(format!(
                "unknown command {c} (ps, events, watch; see --help)"
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
    Ok(Args { engines, command })
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
            (&["--auto", "ps"][..], "--auto is not supported yet"),
        ] {
            let e = p(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }
}
