//! The C example (examples/c, with gcc, under valgrind, shared and static) and the Python
//! example (examples/python, ctypes) against the real dockerd, checked against
//! `docker inspect`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::cli::Cli;
use support::ffi::{lib_dir, root};

const EVENTS: usize = 5;

/// Compiles examples/c/portfolio_events.c against the shared or the static library.
fn build_c(lib: &Path, static_link: bool) -> PathBuf {
    let name = if static_link {
        "portfolio_events_static"
    } else {
        "portfolio_events_shared"
    };
    build(
        lib,
        &root().join("examples/c/portfolio_events.c"),
        name,
        static_link,
    )
}

/// Compiles one C file against the shared or the static library.
fn build(lib: &Path, source: &Path, name: &str, static_link: bool) -> PathBuf {
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let mut cmd = Command::new("gcc");
    cmd.args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-g", "-I"])
        .arg(root().join("include"))
        .arg(source)
        .arg("-o")
        .arg(&exe);
    if static_link {
        cmd.arg(lib.join("libwhalewatcher.a")).args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
        ]);
    } else {
        cmd.arg("-L")
            .arg(lib)
            .arg("-lwhalewatcher")
            .arg(format!("-Wl,-rpath,{}", lib.display()));
    }
    let out = cmd.output().expect("cannot run gcc");
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Starts enough containers of our own that the synthetic events alone fill the count.
fn own_containers(docker: &Cli, tag: &str) -> Vec<(String, String)> {
    (0..EVENTS).map(|_| docker.start_new(tag)).collect()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    k.sort();
    k
}

/// Checks an example's output: the portfolio line against `docker inspect` for our
/// containers, then exactly EVENTS well-formed event lines (for one engine: all of them
/// the synthetic picture).
fn check_output(out: &Output, docker: &Cli, own: &[(String, String)]) {
    check_output_of(out, docker, own, true)
}

fn check_output_of(out: &Output, docker: &Cli, own: &[(String, String)], one_engine: bool) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "example failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let mut lines = stdout.lines();
    let portfolio: Vec<Value> = serde_json::from_str(
        lines
            .next()
            .and_then(|l| l.strip_prefix("portfolio "))
            .expect("first line: portfolio JSON"),
    )
    .unwrap();
    for (id, name) in own {
        let c = portfolio
            .iter()
            .find(|c| c["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{name} missing from the portfolio"));
        assert_eq!(c["name"], name.as_str());
        assert_eq!(c["pid"].as_u64(), Some(docker.pid(id)), "{name}");
        assert_eq!(c["engine"], "docker.com");
        assert_eq!(
            keys(c),
            ["engine", "id", "image", "labels", "name", "paused", "pid", "project"]
        );
    }
    let events: Vec<Value> = lines
        .map(|l| serde_json::from_str(l.strip_prefix("event ").expect("event line")).unwrap())
        .collect();
    assert_eq!(events.len(), EVENTS, "{stdout}");
    for ev in &events {
        assert_eq!(
            keys(ev),
            [
                "container",
                "exit_code",
                "oom",
                "seq",
                "synthetic",
                "time",
                "type"
            ]
        );
        if !one_engine {
            // Engines' streams interleave; another engine's live events may come first.
            continue;
        }
        // Our containers outnumber the events: all are the synthetic picture.
        assert_eq!(ev["type"], "started", "{ev}");
        assert_eq!(ev["synthetic"], true, "{ev}");
        let id = ev["container"]["id"].as_str().unwrap();
        // A container missing from the portfolio started in between (a foreign test's).
        if let Some(c) = portfolio.iter().find(|c| c["id"] == id) {
            assert_eq!(&ev["container"], c, "event and portfolio disagree");
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// True when valgrind is there; else a loud skip (a failure when engines are required).
fn have_valgrind() -> bool {
    if Command::new("valgrind").arg("--version").output().is_ok() {
        return true;
    }
    let msg = "valgrind is not installed (apt-get install -y valgrind)";
    assert!(!support::engines_required(), "{msg}");
    eprintln!("\n*** SKIPPING: {msg} ***\n");
    false
}

/// Runs `exe args` under valgrind: exit status 99 on any memory error or definite leak.
fn valgrind(exe: &Path, args: &[&str]) -> Output {
    let out = run(Command::new("valgrind")
        .args([
            "-q",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--error-exitcode=99",
        ])
        .arg(exe)
        .args(args));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(99),
        "valgrind found errors:\n{stderr}"
    );
    assert!(!stderr.contains("definitely lost"), "valgrind:\n{stderr}");
    out
}

#[test]
fn c_example_under_valgrind() {
    c_example_valgrind("docker");
}

/// The C example with engine "auto" (discovery and the fleet) under valgrind.
#[test]
fn c_example_auto_under_valgrind() {
    c_example_valgrind("auto");
}

/// Runs the C example (shared library, its own executable: the tests run in parallel)
/// under valgrind for `engine` "docker" (the test dockerd) or "auto", and checks its output.
fn c_example_valgrind(engine: &str) {
    let (Some(docker), Some(lib)) = (Cli::shared_docker(), lib_dir()) else {
        return;
    };
    if !have_valgrind() {
        return;
    }
    let exe = build(
        &lib,
        &root().join("examples/c/portfolio_events.c"),
        &format!("portfolio_events_valgrind_{engine}"),
        false,
    );
    let own = own_containers(&docker, &format!("cvg{engine}"));
    let count = EVENTS.to_string();
    let args = match engine {
        "docker" => [engine, docker.url.as_str(), &count, "60"],
        _ => [engine, "", &count, "120"],
    };
    let out = valgrind(&exe, &args);
    check_output_of(&out, &docker, &own, engine == "docker");
}

/// The ABI's edge paths from C (tests/support/abi.c), under valgrind.
#[test]
fn c_abi_edges_under_valgrind() {
    let (Some(docker), Some(lib)) = (Cli::shared_docker(), lib_dir()) else {
        return;
    };
    if !have_valgrind() {
        return;
    }
    let exe = build(&lib, &root().join("tests/support/abi.c"), "abi", false);
    let out = valgrind(&exe, &[&docker.url]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

#[test]
fn c_example_linked_statically() {
    let (Some(docker), Some(lib)) = (Cli::shared_docker(), lib_dir()) else {
        return;
    };
    let exe = build_c(&lib, true);
    let own = own_containers(&docker, "cst");
    let out = run(Command::new(&exe).args(["docker", &docker.url, &EVENTS.to_string(), "60"]));
    check_output(&out, &docker, &own);
}

fn python(lib: &Path) -> Command {
    let mut cmd = Command::new("python3");
    cmd.env("WHALEWATCHER_LIB", lib.join("libwhalewatcher.so"));
    cmd
}

#[test]
fn python_example() {
    let (Some(docker), Some(lib)) = (Cli::shared_docker(), lib_dir()) else {
        return;
    };
    let own = own_containers(&docker, "py");
    let out = run(python(&lib)
        .arg(root().join("examples/python/portfolio_events.py"))
        .args(["docker", &docker.url, &EVENTS.to_string(), "60"]));
    check_output(&out, &docker, &own);
}

/// The wrapper's lookup, health and errors.
#[test]
fn python_wrapper_lookup_health_and_errors() {
    let (Some(docker), Some(lib)) = (Cli::shared_docker(), lib_dir()) else {
        return;
    };
    let (id, name) = docker.start_new("pyw");
    let script = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
import whalewatcher as ww
url, cid, name = sys.argv[2:5]
for engine, endpoint, status in (("auto", "nope", -3), ("rocket", None, -3)):
    try:
        ww.Watcher(engine, endpoint)
        sys.exit(f"{engine}: no error")
    except ww.WhalewatcherError as e:
        assert e.status == status, e
# "auto": the dockerd is discovered; our container comes through the fleet.
with ww.Watcher("auto") as a:
    a.wait_ready(60)
    sock = url[len("unix://"):]
    assert any(e["engine"]["api_path"] == sock and e["state"] == "synced"
               for e in a.health()["engines"]), a.health()
    assert a.lookup(cid)["engine"] == "docker.com", a.lookup(cid)
    assert any(e["engine"]["kind"] == "docker" for e in a.engine_info()), a.engine_info()
    try:
        a.subscribe(since_seq=0)
        sys.exit("auto: subscribe_since worked")
    except ww.WhalewatcherError as e:
        assert e.status == -4, e
with ww.Watcher("docker", url) as w:
    w.wait_ready(30)
    assert w.health() == {"state": "synced"}, w.health()
    assert w.lookup(cid) == w.lookup(name) != None
    assert w.lookup("ffi-no-such-container") is None
    assert w.engine_info()["type"] == "docker.com"
    print(json.dumps(w.lookup(cid)))
    s = w.subscribe()
w.close()
try:
    while s.next(5) is not None:
        pass
    sys.exit("no end after close")
except ww.Ended:
    pass
print("ok")
"#;
    let out = run(python(&lib)
        .args(["-c", script])
        .arg(root().join("examples/python"))
        .args([&docker.url, &id, &name]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    let c: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(c["id"], id.as_str());
    assert_eq!(c["pid"].as_u64(), Some(docker.pid(&id)));
    assert_eq!(lines.next(), Some("ok"));
}
