//! `key.expiring` / `key.expired`: which notices were sent (`key_notices`,
//! one row per key, threshold and expiry, inserted in the transaction that
//! writes the event, so that of several replicas exactly one sends it), and
//! an index on `api_keys (status, expires_at)` so the job's scan reads only
//! the keys near their expiry.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum KeyNotices {
    Table,
    KeyId,
    /// Days before expiry for `key.expiring`; 0 for `key.expired`.
    ThresholdDays,
    /// The expiry the notice was about: a key whose expiry is moved gets new notices.
    ExpiresAt,
    SentAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Status,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KeyNotices::Table)
                    .col(ColumnDef::new(KeyNotices::KeyId).string().not_null())
                    .col(
                        ColumnDef::new(KeyNotices::ThresholdDays)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(KeyNotices::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(KeyNotices::SentAt).big_integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(KeyNotices::KeyId)
                            .col(KeyNotices::ThresholdDays)
                            .col(KeyNotices::ExpiresAt),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_key_notices_expires_at")
                    .table(KeyNotices::Table)
                    .col(KeyNotices::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_api_keys_status_expires_at")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::Status)
                    .col(ApiKeys::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
