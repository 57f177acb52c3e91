use sea_orm::entity::prelude::*;

/// Small named values the service keeps about itself (the master-key check,
/// shared secrets). Every value is sealed under the master key: master-key
/// rotation and the start-up key check walk them all.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "meta")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub value: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
