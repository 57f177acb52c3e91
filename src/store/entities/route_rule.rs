use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "route_rules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Empty = any host.
    pub host: String,
    pub method: String,
    pub path: String,
    pub permission: String,
    pub created_at: i64,
    /// `routes::rule_key`, unique: NULL only for a pre-constraint duplicate.
    pub match_key: Option<String>,
    pub case_insensitive: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
