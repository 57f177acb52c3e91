use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub account_id: String,
    pub mode: String,
    pub kind: String,
    pub name: String,
    /// Hex SHA-256 of the key; the key itself is never stored.
    #[sea_orm(unique)]
    pub key_hash: String,
    pub masked: String,
    /// JSON arrays of strings.
    pub scopes: String,
    pub role: Option<String>,
    pub allowed_cidrs: String,
    pub allowed_origins: String,
    pub status: String,
    pub expires_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_used_at: Option<i64>,
    pub predecessor_id: Option<String>,
    pub successor_id: Option<String>,
    pub overlap_ends_at: Option<i64>,
    pub version: i64,
    /// Added by the signing migration: "requests must be signed" with this secret.
    pub signing_secret_id: Option<String>,
    /// Added by the key rate-limits migration: the key's own limit, all
    /// three NULL when it has none.
    pub rate_limit_requests: Option<i64>,
    pub rate_limit_per_seconds: Option<i64>,
    pub rate_limit_burst: Option<i64>,
    /// Added by the suspension-cause migration.
    pub suspension_cause: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
