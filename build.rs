//! Compiles `proto/` with protox (pure Rust: no protoc on the build machine)
//! and writes the encoded descriptor sets that server reflection serves:
//! Latchkey's own, and Envoy's ext_authz and rate-limit APIs built from the `.proto` files
//! that the `envoy-types` package carries (it ships generated code but no
//! descriptor set, and without one grpcurl cannot see the service).

use std::path::{Path, PathBuf};
use std::process::Command;

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    let files = [
        "proto/latchkey/v1/types.proto",
        "proto/latchkey/v1/account.proto",
        "proto/latchkey/v1/key.proto",
        "proto/latchkey/v1/check.proto",
        "proto/latchkey/v1/route.proto",
        "proto/latchkey/v1/token.proto",
        "proto/latchkey/v1/signing.proto",
        "proto/latchkey/v1/integration.proto",
        "proto/latchkey/v1/consent.proto",
        "proto/latchkey/v1/usage.proto",
        "proto/latchkey/v1/audit.proto",
        "proto/latchkey/v1/webhook.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=Cargo.lock");

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(files)?;
    std::fs::write(
        out_dir.join("latchkey_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;

    let envoy = envoy_proto_dir()?;
    let roots = [
        "data-plane-api",
        "googleapis",
        "protoc-gen-validate",
        "xds",
        "cel-spec/proto",
        "opentelemetry-proto",
        "client_model",
    ];
    let mut envoy_compiler = protox::Compiler::new(roots.iter().map(|r| envoy.join(r)))?;
    envoy_compiler.include_imports(true);
    envoy_compiler
        .open_file(envoy.join("data-plane-api/envoy/service/auth/v3/external_auth.proto"))?;
    envoy_compiler.open_file(envoy.join("data-plane-api/envoy/service/ratelimit/v3/rls.proto"))?;
    std::fs::write(
        out_dir.join("envoy_ext_authz_descriptor.bin"),
        envoy_compiler.encode_file_descriptor_set(),
    )?;
    Ok(())
}

/// The `proto/` directory inside the `envoy-types` package, wherever cargo
/// unpacked it, as `cargo metadata` reports it.
fn envoy_proto_dir() -> Result<PathBuf, BoxError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args(["metadata", "--format-version", "1"])
        .current_dir(std::env::var("CARGO_MANIFEST_DIR")?);
    if let Ok(target) = std::env::var("TARGET") {
        cmd.args(["--filter-platform", &target]);
    }
    let output = cmd.output()?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "envoy-types")
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or("envoy-types is not in cargo metadata's package list")?;
    let dir = Path::new(manifest)
        .parent()
        .ok_or("envoy-types manifest has no directory")?
        .join("proto");
    if !dir.is_dir() {
        return Err(format!("{} does not exist", dir.display()).into());
    }
    Ok(dir)
}
