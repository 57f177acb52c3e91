use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_secrets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub account_id: String,
    pub mode: String,
    pub name: String,
    pub status: String,
    pub current_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// `seed` or `strict` (migration m20261202_000080).
    pub url_form: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
