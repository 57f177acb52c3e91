use sea_orm::entity::prelude::*;

/// A flow configuration: named branding of an account's consent pages.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "flow_configs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub display_name: String,
    pub logo_url: Option<String>,
    pub primary_color: Option<String>,
    pub support_url: Option<String>,
    pub default_language: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
