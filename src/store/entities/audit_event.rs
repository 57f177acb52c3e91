use sea_orm::entity::prelude::*;

/// One audit event (see `domain::model::AuditEvent`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub time: i64,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub account_id: Option<String>,
    pub mode: Option<String>,
    pub target_type: String,
    pub target_id: Option<String>,
    /// JSON object; never a secret, hash or ciphertext.
    pub summary: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub correlation_id: Option<String>,
    pub count: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
