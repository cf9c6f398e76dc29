//! The Rust code of the .proto files under proto/ is generated with rust-protobuf's
//! pure-Rust codegen (no protoc) and checked in under src/proto/, so that building
//! whalewatcher needs no build script and none of the codegen's 21 crates. This test
//! generates it anew and fails when the checked-in code differs; to update it:
//!
//! ```text
//! WHALEWATCHER_REGEN_PROTO=1 cargo test --test proto_codegen
//! ```
//!
//! (When src/proto/ is missing or broken, the library does not compile with its gRPC
//! features: add `--no-default-features --features docker` to that command.)
//!
//! One edit is made to what the codegen writes: its exact-version assertion
//! (`::protobuf::VERSION_3_7_2`) is dropped, so that users are not pinned to one patch
//! release; Cargo.toml keeps the runtime within the codegen's minor version (`~3.7`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The lines of the codegen's exact-version assertion.
const VERSION_CHECK: [&str; 3] = [
    "/// Generated files are compatible only with the same version",
    "/// of protobuf runtime.",
    "const _PROTOBUF_VERSION_CHECK: () = ::protobuf::VERSION_",
];

fn without_version_check(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    for line in code.split_inclusive('\n') {
        if !VERSION_CHECK.iter().any(|v| line.starts_with(v)) {
            out.push_str(line);
        }
    }
    out
}

/// file name → content of the freshly generated code.
fn generate(root: &Path) -> BTreeMap<String, String> {
    let mut protos: Vec<PathBuf> = std::fs::read_dir(root.join("proto"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    protos.sort();
    let out = std::env::temp_dir().join(format!("whalewatcher-proto-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    protobuf_codegen::Codegen::new()
        .pure()
        .include(root.join("proto"))
        .inputs(&protos)
        .out_dir(&out)
        .run()
        .expect("protobuf codegen failed");
    let files = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (
                name,
                without_version_check(&std::fs::read_to_string(&p).unwrap()),
            )
        })
        .collect();
    std::fs::remove_dir_all(&out).unwrap();
    files
}

#[test]
fn checked_in_code_is_what_the_codegen_makes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("src/proto");
    let fresh = generate(root);
    assert!(
        fresh.contains_key("mod.rs") && fresh.len() > 1,
        "{:?}",
        fresh.keys()
    );
    if std::env::var("WHALEWATCHER_REGEN_PROTO").is_ok_and(|v| v == "1") {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, code) in &fresh {
            std::fs::write(dir.join(name), code).unwrap();
        }
        return;
    }
    let checked_in: BTreeMap<String, String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    assert_eq!(
        checked_in.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>(),
        "src/proto/ does not hold the files the codegen makes: regenerate \
         (WHALEWATCHER_REGEN_PROTO=1 cargo test --test proto_codegen)"
    );
    for (name, code) in &fresh {
        assert!(
            &checked_in[name] == code,
            "src/proto/{name} is stale: regenerate \
             (WHALEWATCHER_REGEN_PROTO=1 cargo test --test proto_codegen)"
        );
    }
}
