//! The hosted consent flow: flow configurations (named branding per
//! account), the signed consent links already decided on, and the signing
//! secret a client signs its consent links with.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum FlowConfigs {
    Table,
    Id,
    AccountId,
    Name,
    DisplayName,
    LogoUrl,
    PrimaryColor,
    SupportUrl,
    DefaultLanguage,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ConsentLinkUses {
    Table,
    SignatureHash,
    ClientId,
    UsedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum OauthClients {
    Table,
    SigningSecretId,
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
                    .table(FlowConfigs::Table)
                    .col(text(FlowConfigs::Id).primary_key())
                    .col(text(FlowConfigs::AccountId))
                    .col(text(FlowConfigs::Name))
                    .col(text(FlowConfigs::DisplayName))
                    .col(ColumnDef::new(FlowConfigs::LogoUrl).string().null())
                    .col(ColumnDef::new(FlowConfigs::PrimaryColor).string().null())
                    .col(ColumnDef::new(FlowConfigs::SupportUrl).string().null())
                    .col(text(FlowConfigs::DefaultLanguage))
                    .col(millis(FlowConfigs::CreatedAt))
                    .col(millis(FlowConfigs::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(FlowConfigs::Table, FlowConfigs::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // The `flow_config` parameter names a configuration within the client's account.
        manager
            .create_index(
                Index::create()
                    .name("idx_flow_configs_account_name")
                    .table(FlowConfigs::Table)
                    .col(FlowConfigs::AccountId)
                    .col(FlowConfigs::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ConsentLinkUses::Table)
                    // An explicit type: `binary()` becomes blob(1) on SQLite.
                    .col(
                        ColumnDef::new(ConsentLinkUses::SignatureHash)
                            .blob()
                            .not_null()
                            .primary_key(),
                    )
                    .col(text(ConsentLinkUses::ClientId))
                    .col(millis(ConsentLinkUses::UsedAt))
                    .col(millis(ConsentLinkUses::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OauthClients::Table)
                    .add_column(
                        ColumnDef::new(OauthClients::SigningSecretId)
                            .string()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }
}
