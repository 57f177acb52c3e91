//! `oauth_codes.replayed_at`: when a used authorization code was presented
//! again, so that an exchange racing the replay revokes what it minted.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OauthCodes {
    Table,
    ReplayedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OauthCodes::Table)
                    .add_column(ColumnDef::new(OauthCodes::ReplayedAt).big_integer().null())
                    .to_owned(),
            )
            .await
    }
}
