//! Forward-only, timestamped migrations, embedded in the binary and run by
//! `latchkey migrate` or at start-up. Seed data is not schema: default plans
//! live in configuration, not in a migration.

use sea_orm_migration::prelude::*;

mod m20261126_000001_accounts_and_keys;
mod m20261126_000002_route_rules;
mod m20261126_000003_account_stores;
mod m20261126_000004_meta;
mod m20261126_000005_tokens;
mod m20261126_000010_signing;
mod m20261201_000020_key_rate_limits;
mod m20261201_000021_key_suspension_cause;
mod m20261201_000030_key_usage;
mod m20261201_000031_code_replays;
mod m20261201_000032_unique_route_rules;
mod m20261201_000033_case_insensitive_rules;
mod m20261201_000040_integrations;
// audit trail and webhooks (issue 16)
mod m20261202_000050_audit_events;
mod m20261202_000051_webhooks;
mod m20261202_000060_usage_minutes;
mod m20261202_000070_consent;
mod m20261202_000080_signing_url_form;
// key.expiring / key.expired notices (issue 16)
mod m20261203_000100_key_notices;
// webhook retention
mod m20261204_000110_webhook_purge;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_accounts_and_keys::Migration),
            Box::new(m20261126_000002_route_rules::Migration),
            Box::new(m20261126_000003_account_stores::Migration),
            Box::new(m20261126_000004_meta::Migration),
            Box::new(m20261126_000005_tokens::Migration),
            Box::new(m20261126_000010_signing::Migration),
            Box::new(m20261201_000020_key_rate_limits::Migration),
            Box::new(m20261201_000021_key_suspension_cause::Migration),
            Box::new(m20261201_000030_key_usage::Migration),
            Box::new(m20261201_000031_code_replays::Migration),
            Box::new(m20261201_000032_unique_route_rules::Migration),
            Box::new(m20261201_000033_case_insensitive_rules::Migration),
            Box::new(m20261201_000040_integrations::Migration),
            Box::new(m20261202_000050_audit_events::Migration),
            Box::new(m20261202_000051_webhooks::Migration),
            Box::new(m20261202_000060_usage_minutes::Migration),
            Box::new(m20261202_000070_consent::Migration),
            Box::new(m20261202_000080_signing_url_form::Migration),
            Box::new(m20261203_000100_key_notices::Migration),
            Box::new(m20261204_000110_webhook_purge::Migration),
        ]
    }
}
