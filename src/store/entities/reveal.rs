use sea_orm::entity::prelude::*;

/// A one-time reveal: the token's SHA-256 (hex) and the sealed secret.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reveals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_hash: String,
    pub sealed: Vec<u8>,
    pub kind: String,
    pub subject_id: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("reveal::Model")
            .field("kind", &self.kind)
            .field("subject_id", &self.subject_id)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
