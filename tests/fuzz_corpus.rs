//! Every committed fuzz input (fuzz/corpus/TARGET/*: seeds and the inputs of past
//! findings) replayed through its target's entry point, so that a fixed crash stays fixed
//! without cargo-fuzz.

use std::path::Path;

fn target(name: &str) -> Option<fn(&[u8])> {
    use whalewatcher::fuzzing::*;
    Some(match name {
        "http_response" => http_response,
        "docker_events" => docker_events,
        "docker_inspect" => docker_inspect,
        "docker_list" => docker_list,
        "http2_frames" => http2_frames,
        "hpack" => hpack,
        "containerd_envelope" => containerd_envelope,
        "containerd_records" => containerd_records,
        "cri_messages" => cri_messages,
        _ => return None,
    })
}

#[test]
fn every_corpus_input_runs_without_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut ran = 0;
    for t in std::fs::read_dir(root.join("fuzz_targets")).unwrap() {
        let name = t
            .unwrap()
            .path()
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let run =
            target(&name).unwrap_or_else(|| panic!("fuzz target {name} is not replayed here"));
        let dir = root.join("corpus").join(&name);
        let inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (commit a seed corpus)", dir.display()))
            .map(|f| f.unwrap().path())
            .collect();
        assert!(!inputs.is_empty(), "{}: no seed", dir.display());
        for input in inputs {
            run(&std::fs::read(&input).unwrap());
            ran += 1;
        }
    }
    assert!(ran >= 9, "only {ran} inputs");
}
