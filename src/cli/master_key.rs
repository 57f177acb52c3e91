//! `latchkey master-key status|rotate`: which master key holds how many
//! sealed values, and re-sealing them all under the newest key, online.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{StoreArgs, fail, load_one_shot, master_key_from_env};
use crate::config::Settings;
use crate::domain::vault::master_keys::{self, Census};
use crate::ports::SealedSlot;

#[derive(Debug, Subcommand)]
pub enum MasterKeyCommand {
    /// How many stored values each master key still holds.
    Status {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Re-seal every stored value under the newest key of
    /// LATCHKEY_MASTER_KEYS, in batches, beside the running service. Safe to
    /// stop at any point and run again: it carries on where it stopped.
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Values re-sealed per batch.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_size: u64,
    /// Pause between batches, in milliseconds, to spare a busy database.
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
}

const BATCH: u64 = 500;

fn settings(store: &StoreArgs) -> Result<Settings, String> {
    let mut settings = load_one_shot(store)?
        .validate()
        .map_err(|e| e.to_string())?;
    settings.master_key = master_key_from_env()?;
    Ok(settings)
}

pub async fn run(command: MasterKeyCommand) -> ExitCode {
    let _logs = crate::telemetry::init(false);
    match command {
        MasterKeyCommand::Status { store } => status(&store).await,
        MasterKeyCommand::Rotate(args) => rotate(&args).await,
    }
}

async fn status(store: &StoreArgs) -> ExitCode {
    let settings = match settings(store) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let db = match crate::app::open_store(&settings).await {
        Ok(db) => db,
        Err(e) => return fail(e),
    };
    let result = async {
        db.migrate().await.map_err(|e| e.to_string())?;
        let keys = crate::app::master_key::load(&settings, &db)
            .await
            .map_err(|e| e.to_string())?;
        let census = master_keys::census(&db, &keys, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((keys, census))
    }
    .await;
    db.close().await;
    let (keys, census) = match result {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    print_census(&keys, &census);
    match census.check(&keys) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchkey: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_census(keys: &crate::crypto::envelope::MasterKey, census: &Census) {
    println!("{:<18} {:<11} {:>8}", "MASTER KEY", "STATE", "VALUES");
    let newest = keys.newest();
    for id in keys.ids() {
        let state = if id == newest { "newest" } else { "configured" };
        let n = census.per_key.get(&id).copied().unwrap_or(0);
        println!("{:<18} {state:<11} {n:>8}", id.to_string());
    }
    for (id, n) in census.per_key.iter().filter(|(id, _)| !keys.holds(**id)) {
        println!("{:<18} {:<11} {n:>8}", id.to_string(), "MISSING");
    }
    if census.unopened_legacy > 0 {
        println!(
            "{:<18} {:<11} {:>8}",
            "(old layout)", "UNOPENED", census.unopened_legacy
        );
    }
    println!("total {} value(s)", census.total);
}

async fn rotate(args: &RotateArgs) -> ExitCode {
    let settings = match settings(&args.store) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let db = match crate::app::open_store(&settings).await {
        Ok(db) => db,
        Err(e) => return fail(e),
    };
    let result = rotate_all(&settings, &db, args).await;
    db.close().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

async fn rotate_all(
    settings: &Settings,
    db: &crate::store::SqlStore,
    args: &RotateArgs,
) -> Result<(), String> {
    db.migrate().await.map_err(|e| e.to_string())?;
    let keys = crate::app::master_key::load(settings, db)
        .await
        .map_err(|e| e.to_string())?;
    master_keys::ready_to_rotate(&keys).map_err(|e| e.to_string())?;
    let census = master_keys::census(db, &keys, BATCH)
        .await
        .map_err(|e| e.to_string())?;
    census.check(&keys).map_err(|e| e.to_string())?;
    let newest = keys.newest();
    let outstanding = census.outstanding(&keys);
    eprintln!(
        "latchkey: {outstanding} of {} value(s) to re-seal under master key {newest}",
        census.total
    );
    let mut done = 0u64;
    let mut after: Option<SealedSlot> = None;
    loop {
        let batch = master_keys::rotate_batch(db, &keys, after.as_ref(), args.batch_size)
            .await
            .map_err(|e| e.to_string())?;
        if batch.resealed > 0 {
            done += batch.resealed;
            // Progress, one line per batch that changed something.
            eprintln!("latchkey: re-sealed {done}/{outstanding}");
        }
        let Some(next) = batch.next else { break };
        after = Some(next);
        if args.pause_ms > 0 && batch.resealed > 0 {
            tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
        }
    }
    let after = master_keys::census(db, &keys, BATCH)
        .await
        .map_err(|e| e.to_string())?;
    let left = after.outstanding(&keys);
    if left > 0 {
        return Err(format!(
            "{left} value(s) are still under older keys (written meanwhile by a replica \
             that does not have {newest} first?); run the rotation again"
        ));
    }
    eprintln!(
        "latchkey: rotation done: all {} value(s) are under master key {newest}; the older \
         keys can be removed from LATCHKEY_MASTER_KEYS",
        after.total
    );
    Ok(())
}
