//! The audit trail: one row per mutation (written in the mutation's own
//! transaction) and per aggregated authentication outcome.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum AuditEvents {
    Table,
    Id,
    Time,
    Actor,
    Action,
    Outcome,
    AccountId,
    Mode,
    TargetType,
    TargetId,
    Summary,
    ClientIp,
    UserAgent,
    CorrelationId,
    Count,
}

fn text(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).string().not_null().to_owned()
}

fn nullable(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).string().null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(text(AuditEvents::Id).primary_key())
                    .col(ColumnDef::new(AuditEvents::Time).big_integer().not_null())
                    .col(text(AuditEvents::Actor))
                    .col(text(AuditEvents::Action))
                    .col(text(AuditEvents::Outcome))
                    .col(nullable(AuditEvents::AccountId))
                    .col(nullable(AuditEvents::Mode))
                    .col(text(AuditEvents::TargetType))
                    .col(nullable(AuditEvents::TargetId))
                    .col(ColumnDef::new(AuditEvents::Summary).text().not_null())
                    .col(nullable(AuditEvents::ClientIp))
                    .col(nullable(AuditEvents::UserAgent))
                    .col(nullable(AuditEvents::CorrelationId))
                    .col(
                        ColumnDef::new(AuditEvents::Count)
                            .big_integer()
                            .not_null()
                            .default(1),
                    )
                    .to_owned(),
            )
            .await?;
        // Keyset paging is on (time, id); retention deletes by time. Every
        // filter of ListEvents leads with its own column and ends on the
        // paging order, so a filtered page is an index range scan.
        let indexes: [(&str, &[AuditEvents]); 5] = [
            (
                "idx_audit_events_time",
                &[AuditEvents::Time, AuditEvents::Id],
            ),
            (
                "idx_audit_events_account",
                &[AuditEvents::AccountId, AuditEvents::Time],
            ),
            (
                "idx_audit_events_target",
                &[AuditEvents::TargetId, AuditEvents::Time],
            ),
            (
                "idx_audit_events_actor",
                &[AuditEvents::Actor, AuditEvents::Time],
            ),
            (
                "idx_audit_events_action",
                &[AuditEvents::Action, AuditEvents::Time],
            ),
        ];
        for (name, cols) in indexes {
            let mut index = Index::create();
            index.name(name).table(AuditEvents::Table);
            for col in cols {
                index.col(*col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }
}
