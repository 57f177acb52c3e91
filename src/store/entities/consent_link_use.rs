use sea_orm::entity::prelude::*;

/// A signed consent link that was decided on, by the SHA-256 of its
/// signature; kept until the link would have expired anyway.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "consent_link_uses")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub signature_hash: Vec<u8>,
    pub client_id: String,
    pub used_at: i64,
    pub expires_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
