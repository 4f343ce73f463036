//! libFuzzer entry point: see `libnbd_rs_fuzz::run_one`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    libnbd_rs_fuzz::run_one(data);
});
