//! Generates Rust code for the minimal .proto files under proto/ with rust-protobuf's
//! pure-Rust parser: no protoc needed.

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let mut protos: Vec<_> = std::fs::read_dir("proto")
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "proto"))
                .collect()
        })
        .unwrap_or_default();
    protos.sort();
    if protos.is_empty() {
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("proto");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("mod.rs"), "").unwrap();
        return;
    }
    protobuf_codegen::Codegen::new()
        .pure()
        .include("proto")
        .inputs(&protos)
        .cargo_out_dir("proto")
        .run_from_script();
}
