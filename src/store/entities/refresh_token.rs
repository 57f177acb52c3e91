use sea_orm::entity::prelude::*;

/// A refresh token, by its SHA-256, with the access token issued beside it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_refresh_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_hash: Vec<u8>,
    pub family_id: String,
    /// `client` (an OAuth2 client) or `key` (an exchanged API key).
    pub holder_kind: String,
    pub holder_id: String,
    pub account_id: String,
    pub mode: String,
    pub subject: String,
    pub scope: String,
    pub access_jti: String,
    pub access_expires_at: i64,
    pub expires_at: i64,
    pub created_at: i64,
    /// Set when it was traded for a new one; presenting it again revokes the family.
    pub rotated_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
