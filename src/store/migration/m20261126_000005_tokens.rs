use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    Algorithm,
    PrivateSealed,
    PublicKey,
    CreatedAt,
    RetiredAt,
    ActiveSlot,
}

#[derive(DeriveIden)]
enum OauthClients {
    Table,
    ClientId,
    AccountId,
    Mode,
    Name,
    SecretHash,
    RedirectUris,
    GrantTypes,
    Scopes,
    CreatedAt,
}

#[derive(DeriveIden)]
enum OauthCodes {
    Table,
    CodeHash,
    ClientId,
    Subject,
    RedirectUri,
    Scope,
    CodeChallenge,
    FamilyId,
    ExpiresAt,
    UsedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum OauthRefreshTokens {
    Table,
    TokenHash,
    FamilyId,
    HolderKind,
    HolderId,
    AccountId,
    Mode,
    Subject,
    Scope,
    AccessJti,
    AccessExpiresAt,
    ExpiresAt,
    CreatedAt,
    RotatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum RevokedTokens {
    Table,
    Jti,
    ExpiresAt,
}

fn text<T: IntoIden>(c: T) -> ColumnDef {
    ColumnDef::new(c).string().not_null().take()
}

fn millis<T: IntoIden>(c: T) -> ColumnDef {
    ColumnDef::new(c).big_integer().not_null().take()
}

fn bytes<T: IntoIden>(c: T) -> ColumnDef {
    ColumnDef::new(c).binary().not_null().take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .col(text(SigningKeys::Kid).primary_key())
                    .col(text(SigningKeys::Algorithm))
                    .col(bytes(SigningKeys::PrivateSealed))
                    .col(bytes(SigningKeys::PublicKey))
                    .col(millis(SigningKeys::CreatedAt))
                    .col(ColumnDef::new(SigningKeys::RetiredAt).big_integer().null())
                    // 1 for the one active key, NULL once retired: UNIQUE
                    // lets at most one key be active, whichever replica
                    // creates it (NULLs never collide, on either backend).
                    .col(
                        ColumnDef::new(SigningKeys::ActiveSlot)
                            .small_integer()
                            .null()
                            .unique_key(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OauthClients::Table)
                    .col(text(OauthClients::ClientId).primary_key())
                    .col(text(OauthClients::AccountId))
                    .col(text(OauthClients::Mode))
                    .col(text(OauthClients::Name))
                    .col(bytes(OauthClients::SecretHash))
                    .col(ColumnDef::new(OauthClients::RedirectUris).text().not_null())
                    .col(ColumnDef::new(OauthClients::GrantTypes).text().not_null())
                    .col(ColumnDef::new(OauthClients::Scopes).text().not_null())
                    .col(millis(OauthClients::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_oauth_clients_account")
                    .table(OauthClients::Table)
                    .col(OauthClients::AccountId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OauthCodes::Table)
                    .col(bytes(OauthCodes::CodeHash).primary_key())
                    .col(text(OauthCodes::ClientId))
                    .col(text(OauthCodes::Subject))
                    .col(ColumnDef::new(OauthCodes::RedirectUri).text().not_null())
                    .col(ColumnDef::new(OauthCodes::Scope).text().not_null())
                    .col(text(OauthCodes::CodeChallenge))
                    .col(text(OauthCodes::FamilyId))
                    .col(millis(OauthCodes::ExpiresAt))
                    .col(ColumnDef::new(OauthCodes::UsedAt).big_integer().null())
                    .col(millis(OauthCodes::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OauthRefreshTokens::Table)
                    .col(bytes(OauthRefreshTokens::TokenHash).primary_key())
                    .col(text(OauthRefreshTokens::FamilyId))
                    .col(text(OauthRefreshTokens::HolderKind))
                    .col(text(OauthRefreshTokens::HolderId))
                    .col(text(OauthRefreshTokens::AccountId))
                    .col(text(OauthRefreshTokens::Mode))
                    .col(text(OauthRefreshTokens::Subject))
                    .col(ColumnDef::new(OauthRefreshTokens::Scope).text().not_null())
                    .col(text(OauthRefreshTokens::AccessJti))
                    .col(millis(OauthRefreshTokens::AccessExpiresAt))
                    .col(millis(OauthRefreshTokens::ExpiresAt))
                    .col(millis(OauthRefreshTokens::CreatedAt))
                    .col(
                        ColumnDef::new(OauthRefreshTokens::RotatedAt)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(OauthRefreshTokens::RevokedAt)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_oauth_refresh_family")
                    .table(OauthRefreshTokens::Table)
                    .col(OauthRefreshTokens::FamilyId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_oauth_refresh_holder")
                    .table(OauthRefreshTokens::Table)
                    .col(OauthRefreshTokens::HolderId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RevokedTokens::Table)
                    .col(text(RevokedTokens::Jti).primary_key())
                    .col(millis(RevokedTokens::ExpiresAt))
                    .to_owned(),
            )
            .await
    }
}
