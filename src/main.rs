//! The `latchkey` binary: parse the command line and dispatch. No logic here.

use std::process::ExitCode;

use clap::Parser;

// glibc malloc showed up as ~10% of Check's CPU under load; mimalloc's
// thread-local free lists take that off the hot path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = latchkey::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("latchkey: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // sqlx's rustls needs a process-wide crypto provider; aws-lc-rs is the one in the tree.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    runtime.block_on(latchkey::cli::run(cli))
}
