//! `signing_secrets.url_form`: which canonical form the secret's signed URLs
//! use (`seed` or `strict`, `domain::signing::strict_url::UrlForm`). Existing
//! secrets keep the seed's form, so links already handed out still verify.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SigningSecrets {
    Table,
    UrlForm,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SigningSecrets::Table)
                    .add_column(
                        ColumnDef::new(SigningSecrets::UrlForm)
                            .string()
                            .not_null()
                            .default("seed"),
                    )
                    .to_owned(),
            )
            .await
    }
}
