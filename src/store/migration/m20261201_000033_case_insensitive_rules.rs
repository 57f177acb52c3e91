//! `route_rules.case_insensitive`: rules whose literal segments match in
//! any ASCII case. Existing rules stay exact.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RouteRules {
    Table,
    CaseInsensitive,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(RouteRules::Table)
                    .add_column(
                        ColumnDef::new(RouteRules::CaseInsensitive)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await
    }
}
