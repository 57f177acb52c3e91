use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    Name,
    Plan,
    LiveStatus,
    IsOperator,
    CreatedAt,
    UpdatedAt,
    Version,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    AccountId,
    Mode,
    Kind,
    Name,
    KeyHash,
    Masked,
    Scopes,
    Role,
    AllowedCidrs,
    AllowedOrigins,
    Status,
    ExpiresAt,
    CreatedAt,
    UpdatedAt,
    LastUsedAt,
    PredecessorId,
    SuccessorId,
    OverlapEndsAt,
    Version,
}

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().not_null().take()
}

fn millis(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .col(text(Accounts::Id).primary_key())
                    .col(text(Accounts::Name))
                    .col(text(Accounts::Plan))
                    .col(text(Accounts::LiveStatus))
                    .col(
                        ColumnDef::new(Accounts::IsOperator)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(millis(Accounts::CreatedAt))
                    .col(millis(Accounts::UpdatedAt))
                    .col(millis(Accounts::Version))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(text(ApiKeys::Id).primary_key())
                    .col(text(ApiKeys::AccountId))
                    .col(text(ApiKeys::Mode))
                    .col(text(ApiKeys::Kind))
                    .col(text(ApiKeys::Name))
                    .col(text(ApiKeys::KeyHash).unique_key())
                    .col(text(ApiKeys::Masked))
                    .col(ColumnDef::new(ApiKeys::Scopes).text().not_null())
                    .col(ColumnDef::new(ApiKeys::Role).string().null())
                    .col(ColumnDef::new(ApiKeys::AllowedCidrs).text().not_null())
                    .col(ColumnDef::new(ApiKeys::AllowedOrigins).text().not_null())
                    .col(text(ApiKeys::Status))
                    .col(millis(ApiKeys::ExpiresAt))
                    .col(millis(ApiKeys::CreatedAt))
                    .col(millis(ApiKeys::UpdatedAt))
                    .col(ColumnDef::new(ApiKeys::LastUsedAt).big_integer().null())
                    .col(ColumnDef::new(ApiKeys::PredecessorId).string().null())
                    .col(ColumnDef::new(ApiKeys::SuccessorId).string().null())
                    .col(ColumnDef::new(ApiKeys::OverlapEndsAt).big_integer().null())
                    .col(millis(ApiKeys::Version))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_api_keys_account")
                            .from(ApiKeys::Table, ApiKeys::AccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_api_keys_account_mode_status")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::AccountId)
                    .col(ApiKeys::Mode)
                    .col(ApiKeys::Status)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
