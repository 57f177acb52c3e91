//! Integrations (remote credentials, sealed) and their connection tests.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Integrations {
    Table,
    Id,
    AccountId,
    Mode,
    StoreId,
    Kind,
    Name,
    BaseUrl,
    SealedCredentials,
    Hints,
    Settings,
    CreatedAt,
    UpdatedAt,
    Version,
}

#[derive(DeriveIden)]
enum IntegrationTests {
    Table,
    Id,
    IntegrationId,
    Ok,
    HttpStatus,
    LatencyMs,
    Error,
    Excerpt,
    TestedAt,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

fn text(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).string().not_null().to_owned()
}

fn millis(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).big_integer().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Integrations::Table)
                    .col(text(Integrations::Id).primary_key())
                    .col(text(Integrations::AccountId))
                    .col(text(Integrations::Mode))
                    .col(ColumnDef::new(Integrations::StoreId).string().null())
                    .col(text(Integrations::Kind))
                    .col(text(Integrations::Name))
                    .col(text(Integrations::BaseUrl))
                    // An explicit type: `binary()` becomes blob(1) on SQLite.
                    .col(
                        ColumnDef::new(Integrations::SealedCredentials)
                            .blob()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Integrations::Hints).text().not_null())
                    .col(ColumnDef::new(Integrations::Settings).text().not_null())
                    .col(millis(Integrations::CreatedAt))
                    .col(millis(Integrations::UpdatedAt))
                    .col(millis(Integrations::Version))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Integrations::Table, Integrations::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_integrations_account")
                    .table(Integrations::Table)
                    .col(Integrations::AccountId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(IntegrationTests::Table)
                    .col(text(IntegrationTests::Id).primary_key())
                    .col(text(IntegrationTests::IntegrationId))
                    .col(ColumnDef::new(IntegrationTests::Ok).boolean().not_null())
                    .col(
                        ColumnDef::new(IntegrationTests::HttpStatus)
                            .integer()
                            .null(),
                    )
                    .col(millis(IntegrationTests::LatencyMs))
                    .col(ColumnDef::new(IntegrationTests::Error).text().null())
                    .col(ColumnDef::new(IntegrationTests::Excerpt).text().not_null())
                    .col(millis(IntegrationTests::TestedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(IntegrationTests::Table, IntegrationTests::IntegrationId)
                            .to(Integrations::Table, Integrations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_integration_tests_integration")
                    .table(IntegrationTests::Table)
                    .col(IntegrationTests::IntegrationId)
                    .col(IntegrationTests::TestedAt)
                    .to_owned(),
            )
            .await
    }
}
