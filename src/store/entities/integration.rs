use sea_orm::entity::prelude::*;

/// An integration: remote credentials, sealed under the master key.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "integrations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub account_id: String,
    pub mode: String,
    pub store_id: Option<String>,
    pub kind: String,
    pub name: String,
    pub base_url: String,
    pub sealed_credentials: Vec<u8>,
    /// JSON object: field → masked hint.
    pub hints: String,
    /// JSON object: setting → value.
    pub settings: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("integration::Model")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
