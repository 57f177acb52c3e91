//! Signing secrets and their sealed versions, one-time reveals, and the
//! "requests must be signed" link on API keys.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SigningSecrets {
    Table,
    Id,
    AccountId,
    Mode,
    Name,
    Status,
    CurrentVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SigningSecretVersions {
    Table,
    SecretId,
    Version,
    Sealed,
    CreatedAt,
    RetiredAt,
    OverlapEndsAt,
}

#[derive(DeriveIden)]
enum Reveals {
    Table,
    TokenHash,
    Sealed,
    Kind,
    SubjectId,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    SigningSecretId,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SigningSecrets::Table)
                    .col(
                        ColumnDef::new(SigningSecrets::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(SigningSecrets::AccountId)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SigningSecrets::Mode).string().not_null())
                    .col(ColumnDef::new(SigningSecrets::Name).string().not_null())
                    .col(ColumnDef::new(SigningSecrets::Status).string().not_null())
                    .col(
                        ColumnDef::new(SigningSecrets::CurrentVersion)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SigningSecrets::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SigningSecrets::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(SigningSecrets::Table, SigningSecrets::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_signing_secrets_account")
                    .table(SigningSecrets::Table)
                    .col(SigningSecrets::AccountId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SigningSecretVersions::Table)
                    .col(
                        ColumnDef::new(SigningSecretVersions::SecretId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SigningSecretVersions::Version)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SigningSecretVersions::Sealed)
                            .blob()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SigningSecretVersions::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SigningSecretVersions::RetiredAt)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(SigningSecretVersions::OverlapEndsAt)
                            .big_integer()
                            .null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(SigningSecretVersions::SecretId)
                            .col(SigningSecretVersions::Version),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                SigningSecretVersions::Table,
                                SigningSecretVersions::SecretId,
                            )
                            .to(SigningSecrets::Table, SigningSecrets::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Reveals::Table)
                    .col(
                        ColumnDef::new(Reveals::TokenHash)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Reveals::Sealed).blob().not_null())
                    .col(ColumnDef::new(Reveals::Kind).string().not_null())
                    .col(ColumnDef::new(Reveals::SubjectId).string().not_null())
                    .col(ColumnDef::new(Reveals::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Reveals::ExpiresAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_reveals_expires_at")
                    .table(Reveals::Table)
                    .col(Reveals::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ApiKeys::Table)
                    .add_column(ColumnDef::new(ApiKeys::SigningSecretId).string().null())
                    .to_owned(),
            )
            .await
    }
}
