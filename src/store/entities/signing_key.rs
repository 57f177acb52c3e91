use sea_orm::entity::prelude::*;

/// A JWT signing key. The private half is sealed under the master key.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    pub algorithm: String,
    pub private_sealed: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_at: i64,
    /// Set when a newer key took over; the key then verifies but never signs.
    pub retired_at: Option<i64>,
    /// 1 while active, NULL once retired; unique, so one key is active.
    pub active_slot: Option<i16>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
