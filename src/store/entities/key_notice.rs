use sea_orm::entity::prelude::*;

/// A `key.expiring` (threshold in days) or `key.expired` (threshold 0)
/// notice that was sent for a key's expiry.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "key_notices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub key_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub threshold_days: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub expires_at: i64,
    pub sent_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
