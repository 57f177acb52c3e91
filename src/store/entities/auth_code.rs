use sea_orm::entity::prelude::*;

/// An authorization code, by its SHA-256. Single use.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_codes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub code_hash: Vec<u8>,
    pub client_id: String,
    pub subject: String,
    pub redirect_uri: String,
    pub scope: String,
    pub code_challenge: String,
    /// The token family the code's exchange starts (revoked if the code is replayed).
    pub family_id: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub created_at: i64,
    /// When a used code was presented again: the exchange that won checks
    /// it after minting, so tokens issued a moment after the replay's
    /// revocation are revoked too.
    pub replayed_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
