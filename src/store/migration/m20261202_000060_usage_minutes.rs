//! Usage analytics: per-minute counts per key, permission, outcome and
//! source country (`usage_minutes`); where each key has been seen from
//! (`usage_countries`, for unusual-location events); and which keys were
//! told about unused scopes (`usage_advice`). No foreign keys, as for
//! `key_usage`: a flush must never lock a key's row.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UsageMinutes {
    Table,
    Minute,
    KeyId,
    AccountId,
    Mode,
    Permission,
    Outcome,
    Country,
    Count,
}

#[derive(DeriveIden)]
enum UsageCountries {
    Table,
    KeyId,
    Country,
    LastSeen,
    AlertedDay,
}

#[derive(DeriveIden)]
enum UsageAdvice {
    Table,
    KeyId,
    ScopeUnusedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsageMinutes::Table)
                    .col(
                        ColumnDef::new(UsageMinutes::Minute)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(UsageMinutes::KeyId).string().not_null())
                    .col(ColumnDef::new(UsageMinutes::AccountId).string().not_null())
                    .col(ColumnDef::new(UsageMinutes::Mode).string().not_null())
                    .col(ColumnDef::new(UsageMinutes::Permission).string().not_null())
                    .col(ColumnDef::new(UsageMinutes::Outcome).string().not_null())
                    .col(ColumnDef::new(UsageMinutes::Country).string().not_null())
                    .col(ColumnDef::new(UsageMinutes::Count).big_integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(UsageMinutes::Minute)
                            .col(UsageMinutes::KeyId)
                            .col(UsageMinutes::Permission)
                            .col(UsageMinutes::Outcome)
                            .col(UsageMinutes::Country),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_usage_minutes_key", UsageMinutes::KeyId),
            ("idx_usage_minutes_account", UsageMinutes::AccountId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(UsageMinutes::Table)
                        .col(col)
                        .col(UsageMinutes::Minute)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(UsageCountries::Table)
                    .col(ColumnDef::new(UsageCountries::KeyId).string().not_null())
                    .col(ColumnDef::new(UsageCountries::Country).string().not_null())
                    .col(
                        ColumnDef::new(UsageCountries::LastSeen)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(UsageCountries::AlertedDay)
                            .big_integer()
                            .null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(UsageCountries::KeyId)
                            .col(UsageCountries::Country),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UsageAdvice::Table)
                    .col(
                        ColumnDef::new(UsageAdvice::KeyId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(UsageAdvice::ScopeUnusedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
