use sea_orm::entity::prelude::*;

/// An OAuth2 client. The secret is kept only as its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_clients")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub client_id: String,
    pub account_id: String,
    pub mode: String,
    pub name: String,
    pub secret_hash: Vec<u8>,
    /// JSON arrays.
    pub redirect_uris: String,
    pub grant_types: String,
    pub scopes: String,
    pub created_at: i64,
    /// The signing secret of the client's signed consent links (`sig_…`).
    pub signing_secret_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
