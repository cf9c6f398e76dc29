#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| whalewatcher::fuzzing::containerd_records(data));
