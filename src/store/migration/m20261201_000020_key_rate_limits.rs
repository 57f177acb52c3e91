//! A key's own rate limit (overriding its plan's): requests per
//! per_seconds, with a burst (0 = requests). All three are NULL when the
//! key has none. One column per statement: SQLite alters one at a time.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    RateLimitRequests,
    RateLimitPerSeconds,
    RateLimitBurst,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            ApiKeys::RateLimitRequests,
            ApiKeys::RateLimitPerSeconds,
            ApiKeys::RateLimitBurst,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKeys::Table)
                        .add_column(ColumnDef::new(column).big_integer().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
