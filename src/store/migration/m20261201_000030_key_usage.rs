//! Last-used times move to a narrow table of their own, so that usage
//! bookkeeping never takes a lock on a key's row: a revocation, suspension
//! or rotation can no longer wait behind a flush, and updating a time no
//! longer rewrites (and bloats) the wide `api_keys` row. No foreign key on
//! purpose: a foreign key check would lock the key row again (FOR KEY SHARE).
//! The old `api_keys.last_used_at` column stays (migrations are
//! forward-only) but is copied here once and no longer written.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum KeyUsage {
    Table,
    KeyId,
    LastUsedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KeyUsage::Table)
                    .col(
                        ColumnDef::new(KeyUsage::KeyId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(KeyUsage::LastUsedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO key_usage (key_id, last_used_at) \
                 SELECT id, last_used_at FROM api_keys WHERE last_used_at IS NOT NULL",
            )
            .await?;
        Ok(())
    }
}
