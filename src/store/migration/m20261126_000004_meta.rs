use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Meta {
    Table,
    Name,
    Value,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Meta::Table)
                    .col(ColumnDef::new(Meta::Name).string().not_null().primary_key())
                    .col(ColumnDef::new(Meta::Value).binary().not_null())
                    .to_owned(),
            )
            .await
    }
}
