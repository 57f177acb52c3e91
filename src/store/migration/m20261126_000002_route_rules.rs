use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RouteRules {
    Table,
    Id,
    Host,
    Method,
    Path,
    Permission,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let text = |c: RouteRules| ColumnDef::new(c).string().not_null().take();
        manager
            .create_table(
                Table::create()
                    .table(RouteRules::Table)
                    .col(text(RouteRules::Id).primary_key())
                    .col(text(RouteRules::Host))
                    .col(text(RouteRules::Method))
                    .col(text(RouteRules::Path))
                    .col(text(RouteRules::Permission))
                    .col(
                        ColumnDef::new(RouteRules::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }
}
