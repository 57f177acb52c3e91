//! The lean `envoy.service.auth.v3.CheckRequest` decoder ext_authz uses
//! instead of envoy-types' (src/grpc/ext_authz/request.rs): never a panic on
//! any bytes Envoy (or anyone on the gRPC port) could send.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = latchkey::grpc::ext_authz::decode_for_fuzzing(data);
});
