//! Route-rule uniqueness as a database constraint: `route_rules.match_key`
//! (host, method, template without parameter names; `model::match_key`)
//! under a unique index, so concurrent `CreateRule` calls can never store a
//! duplicate. Existing rows are keyed oldest first; a row that duplicates
//! an older one keeps no key, and is reported and
//! denied by the route table until it is deleted.

use std::collections::HashSet;

use sea_orm_migration::prelude::*;

use crate::domain::model::match_key;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RouteRules {
    Table,
    Id,
    Host,
    Method,
    Path,
    CreatedAt,
    MatchKey,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(RouteRules::Table)
                    .add_column(ColumnDef::new(RouteRules::MatchKey).string().null())
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let rows = db
            .query_all(
                Query::select()
                    .columns([
                        RouteRules::Id,
                        RouteRules::Host,
                        RouteRules::Method,
                        RouteRules::Path,
                    ])
                    .from(RouteRules::Table)
                    .order_by(RouteRules::CreatedAt, Order::Asc)
                    .order_by(RouteRules::Id, Order::Asc),
            )
            .await?;
        let mut seen = HashSet::new();
        for row in rows {
            let id: String = row.try_get("", "id")?;
            let host: String = row.try_get("", "host")?;
            let method: String = row.try_get("", "method")?;
            let path: String = row.try_get("", "path")?;
            let host = (!host.is_empty()).then_some(host.as_str());
            let key = match_key(host, &method, &path, false);
            if !seen.insert(key.clone()) {
                continue;
            }
            db.execute(
                Query::update()
                    .table(RouteRules::Table)
                    .value(RouteRules::MatchKey, key)
                    .and_where(Expr::col(RouteRules::Id).eq(id)),
            )
            .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("ux_route_rules_match_key")
                    .table(RouteRules::Table)
                    .col(RouteRules::MatchKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }
}
