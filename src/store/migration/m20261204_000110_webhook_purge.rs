//! An index on `webhook_deliveries (updated_at)`, for the retention purge:
//! it takes the oldest finished deliveries first, a batch at a time, and
//! without the index each batch read the whole table.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_deliveries_updated")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::UpdatedAt)
                    .to_owned(),
            )
            .await
    }
}
