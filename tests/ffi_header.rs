//! include/whalewatcher.h matches the C ABI: the same functions with the same signatures
//! and the same constants as src/ffi, exactly the symbols the built libraries export, and
//! it compiles as C99 and as C++ without warnings.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use support::ffi::{lib_dir, root};

fn header() -> String {
    std::fs::read_to_string(root().join("include/whalewatcher.h")).unwrap()
}

fn ffi_sources() -> String {
    let mut all = String::new();
    let mut files: Vec<_> = std::fs::read_dir(root().join("src/ffi"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    for f in files {
        all.push_str(&std::fs::read_to_string(f).unwrap());
        all.push('\n');
    }
    all
}

fn strip_c_comments(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        let j = rest[i..].find("*/").expect("unterminated comment") + i + 2;
        rest = &rest[j..];
    }
    out.push_str(rest);
    out
}

/// A C type in canonical spelling: `const char *`, `ww_watcher **`, `uint64_t`.
fn canon_c(tokens: &[&str]) -> String {
    let words: Vec<&str> = tokens.iter().copied().filter(|t| *t != "*").collect();
    let stars = tokens.iter().filter(|t| **t == "*").count();
    let mut s = words.join(" ");
    if stars > 0 {
        s.push(' ');
        s.push_str(&"*".repeat(stars));
    }
    s
}

fn c_tokens(s: &str) -> Vec<&str> {
    let mut v = Vec::new();
    for word in s.split_whitespace() {
        let mut w = word;
        while let Some(rest) = w.strip_prefix('*') {
            v.push("*");
            w = rest;
        }
        let stars = w.len() - w.trim_end_matches('*').len();
        let w = w.trim_end_matches('*');
        if !w.is_empty() {
            v.push(w);
        }
        v.extend(std::iter::repeat_n("*", stars));
    }
    v
}

/// Function name → (return type, parameter types) from the header.
fn header_functions() -> BTreeMap<String, (String, Vec<String>)> {
    let text = strip_c_comments(&header());
    let mut fns = BTreeMap::new();
    for decl in text.split(';') {
        let decl = decl
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join(" ");
        let Some(open) = decl.find('(') else { continue };
        if decl.contains("typedef") || !decl.contains("ww_") {
            continue;
        }
        let close = decl.rfind(')').unwrap();
        let mut head = c_tokens(decl[..open].trim());
        let name = head.pop().unwrap().to_string();
        assert!(name.starts_with("ww_"), "odd declaration {decl:?}");
        let params = decl[open + 1..close].trim();
        let params = if params == "void" {
            vec![]
        } else {
            params
                .split(',')
                .map(|p| {
                    let mut t = c_tokens(p);
                    let pname = t.pop().unwrap();
                    assert!(
                        pname.chars().all(|c| c.is_alphanumeric() || c == '_'),
                        "{name}: unnamed parameter {p:?}"
                    );
                    canon_c(&t)
                })
                .collect()
        };
        assert!(
            fns.insert(name.clone(), (canon_c(&head), params)).is_none(),
            "{name} declared twice"
        );
    }
    fns
}

/// A Rust FFI type as C spells it.
fn rust_to_c(t: &str) -> String {
    let t = t.trim();
    let mut layers = Vec::new();
    let mut rest = t;
    loop {
        if let Some(r) = rest.strip_prefix("*const ") {
            layers.push(true);
            rest = r.trim_start();
        } else if let Some(r) = rest.strip_prefix("*mut ") {
            layers.push(false);
            rest = r.trim_start();
        } else {
            break;
        }
    }
    let base = match rest {
        "c_int" => "int",
        "u64" => "uint64_t",
        "c_char" => "char",
        "WwWatcher" => "ww_watcher",
        "WwSubscription" => "ww_subscription",
        other => panic!("no C spelling for Rust type {other:?} (in {t:?})"),
    };
    let Some((&innermost, outer)) = layers.split_last() else {
        return base.to_string();
    };
    assert!(
        outer.iter().all(|c| !c),
        "{t}: only the pointee may be const"
    );
    let konst = if innermost { "const " } else { "" };
    format!("{konst}{base} {}", "*".repeat(layers.len()))
}

/// Function name → (return type, parameter types) from the `extern "C"` functions of
/// src/ffi, each of which must be `#[no_mangle]`.
fn rust_functions() -> BTreeMap<String, (String, Vec<String>)> {
    let src = ffi_sources();
    let mut fns = BTreeMap::new();
    let mut rest = src.as_str();
    while let Some(i) = rest.find("extern \"C\" fn ") {
        let before = &rest[..i];
        let attr = before
            .rfind("#[no_mangle]")
            .expect("extern fn without #[no_mangle]");
        assert!(
            !before[attr..].contains("\n}\n") && before[attr..].lines().count() <= 2,
            "the extern fn after {:?} is not #[no_mangle]",
            &before[attr..]
        );
        let after = &rest[i + "extern \"C\" fn ".len()..];
        let open = after.find('(').unwrap();
        let name = after[..open].trim().to_string();
        let close = open + after[open..].find(')').unwrap();
        let params: Vec<String> = after[open + 1..close]
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| rust_to_c(p.split_once(':').unwrap().1))
            .collect();
        let brace = close + after[close..].find('{').unwrap();
        let ret = after[close + 1..brace].trim();
        let ret = match ret.strip_prefix("->") {
            Some(t) => rust_to_c(t),
            None => "void".to_string(),
        };
        fns.insert(name, (ret, params));
        rest = &after[brace..];
    }
    fns
}

#[test]
fn header_declares_exactly_the_rust_functions() {
    let h = header_functions();
    let r = rust_functions();
    assert!(r.len() >= 14, "found only {} extern fns", r.len());
    for (name, sig) in &r {
        match h.get(name) {
            Some(hs) => assert_eq!(hs, sig, "{name}: header (left) vs Rust (right)"),
            None => panic!("{name} is exported by src/ffi but not declared in the header"),
        }
    }
    for name in h.keys() {
        assert!(
            r.contains_key(name),
            "{name} is declared in the header but not in src/ffi"
        );
    }
}

#[test]
fn header_constants_match_the_rust_constants() {
    let mut h = BTreeMap::new();
    for line in strip_c_comments(&header()).lines() {
        let mut w = line.split_whitespace();
        if w.next() == Some("#define") {
            let (Some(name), Some(val)) = (w.next(), w.next()) else {
                continue;
            };
            if name.starts_with("WW_") {
                let v: i32 = val.trim_matches(|c| c == '(' || c == ')').parse().unwrap();
                h.insert(name.to_string(), v);
            }
        }
    }
    let mut r = BTreeMap::new();
    for line in ffi_sources().lines() {
        if let Some(rest) = line.trim().strip_prefix("pub const WW_") {
            let (name, val) = rest.split_once(": c_int = ").unwrap();
            let v: i32 = val.trim_end_matches(';').parse().unwrap();
            r.insert(format!("WW_{name}"), v);
        }
    }
    assert_eq!(h, r, "header (left) vs src/ffi (right)");
    // And the parsed source agrees with the compiled constants.
    use whalewatcher::ffi::*;
    for (name, v) in [
        ("WW_OK", WW_OK),
        ("WW_TIMEOUT", WW_TIMEOUT),
        ("WW_NOT_FOUND", WW_NOT_FOUND),
        ("WW_ENDED", WW_ENDED),
        ("WW_GAP", WW_GAP),
        ("WW_LAGGED", WW_LAGGED),
        ("WW_ENGINE", WW_ENGINE),
        ("WW_ERR_NULL", WW_ERR_NULL),
        ("WW_ERR_UTF8", WW_ERR_UTF8),
        ("WW_ERR_INVALID_ARGUMENT", WW_ERR_INVALID_ARGUMENT),
        ("WW_ERR_UNSUPPORTED", WW_ERR_UNSUPPORTED),
        ("WW_ERR_ENGINE", WW_ERR_ENGINE),
        ("WW_ERR_PANIC", WW_ERR_PANIC),
        ("WW_ERR_INTERNAL", WW_ERR_INTERNAL),
        ("WW_HEALTH_CONNECTING", WW_HEALTH_CONNECTING),
        ("WW_HEALTH_SYNCING", WW_HEALTH_SYNCING),
        ("WW_HEALTH_SYNCED", WW_HEALTH_SYNCED),
        ("WW_HEALTH_RECONNECTING", WW_HEALTH_RECONNECTING),
        ("WW_HEALTH_FAILED", WW_HEALTH_FAILED),
    ] {
        assert_eq!(h.get(name), Some(&v), "{name}");
    }
}

#[test]
fn header_compiles_as_c_and_cxx() {
    let h = root().join("include/whalewatcher.h");
    for (cc, std) in [("gcc", "-std=c99"), ("g++", "-std=c++11")] {
        let lang = if cc == "gcc" { "c" } else { "c++" };
        let out = Command::new(cc)
            .args([
                std,
                "-Wall",
                "-Wextra",
                "-pedantic",
                "-Werror",
                "-fsyntax-only",
                "-x",
                lang,
            ])
            .arg(&h)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
        assert!(
            out.status.success(),
            "{cc}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn exported(lib: &std::path::Path, dynamic: bool) -> Vec<String> {
    let mut cmd = Command::new("nm");
    if dynamic {
        cmd.arg("-D");
    }
    let out = cmd.arg("--defined-only").arg(lib).output().expect("nm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut syms: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, kind, name) = (f.next()?, f.next()?, f.next()?);
            (kind == "T" && name.starts_with("ww_")).then(|| name.to_string())
        })
        .collect();
    syms.sort();
    syms.dedup();
    syms
}

#[test]
fn libraries_export_exactly_the_header_functions() {
    let Some(dir) = lib_dir() else { return };
    let declared: Vec<String> = header_functions().into_keys().collect();
    assert_eq!(
        exported(&dir.join("libwhalewatcher.so"), true),
        declared,
        "libwhalewatcher.so"
    );
    assert_eq!(
        exported(&dir.join("libwhalewatcher.a"), false),
        declared,
        "libwhalewatcher.a"
    );
}
