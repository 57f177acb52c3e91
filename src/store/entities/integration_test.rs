use sea_orm::entity::prelude::*;

/// One connection test of an integration.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "integration_tests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub integration_id: String,
    pub ok: bool,
    pub http_status: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub excerpt: String,
    pub tested_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
