//! Webhook endpoints, their sealed signing secrets, the durable outbox of
//! events (written in the mutation's transaction) and one delivery per
//! (event, endpoint).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum WebhookEndpoints {
    Table,
    Id,
    AccountId,
    Url,
    EventTypes,
    Description,
    Format,
    Enabled,
    DisabledReason,
    FailingSince,
    CreatedAt,
    UpdatedAt,
    Version,
}

#[derive(DeriveIden, Clone, Copy)]
enum WebhookSecrets {
    Table,
    EndpointId,
    Version,
    Sealed,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum WebhookEvents {
    Table,
    Id,
    EventType,
    AccountId,
    Mode,
    Payload,
    CreatedAt,
    Dispatched,
}

#[derive(DeriveIden, Clone, Copy)]
enum WebhookDeliveries {
    Table,
    Id,
    EventId,
    EndpointId,
    Status,
    Attempts,
    NextAttemptAt,
    LeaseUntil,
    LastStatus,
    LastError,
    ResponseExcerpt,
    CreatedAt,
    UpdatedAt,
}

fn text(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).string().not_null().to_owned()
}

fn nullable(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).string().null().to_owned()
}

fn millis(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).big_integer().not_null().to_owned()
}

fn millis_null(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c).big_integer().null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookEndpoints::Table)
                    .col(text(WebhookEndpoints::Id).primary_key())
                    .col(nullable(WebhookEndpoints::AccountId))
                    .col(text(WebhookEndpoints::Url))
                    .col(
                        ColumnDef::new(WebhookEndpoints::EventTypes)
                            .text()
                            .not_null(),
                    )
                    .col(text(WebhookEndpoints::Description))
                    .col(text(WebhookEndpoints::Format))
                    .col(
                        ColumnDef::new(WebhookEndpoints::Enabled)
                            .boolean()
                            .not_null(),
                    )
                    .col(nullable(WebhookEndpoints::DisabledReason))
                    .col(millis_null(WebhookEndpoints::FailingSince))
                    .col(millis(WebhookEndpoints::CreatedAt))
                    .col(millis(WebhookEndpoints::UpdatedAt))
                    .col(millis(WebhookEndpoints::Version))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookSecrets::Table)
                    .col(text(WebhookSecrets::EndpointId))
                    .col(millis(WebhookSecrets::Version))
                    // An explicit type: `binary()` becomes blob(1) on SQLite.
                    .col(ColumnDef::new(WebhookSecrets::Sealed).blob().not_null())
                    .col(millis(WebhookSecrets::CreatedAt))
                    .col(millis_null(WebhookSecrets::ExpiresAt))
                    .primary_key(
                        Index::create()
                            .col(WebhookSecrets::EndpointId)
                            .col(WebhookSecrets::Version),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookSecrets::Table, WebhookSecrets::EndpointId)
                            .to(WebhookEndpoints::Table, WebhookEndpoints::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookEvents::Table)
                    .col(text(WebhookEvents::Id).primary_key())
                    .col(text(WebhookEvents::EventType))
                    .col(nullable(WebhookEvents::AccountId))
                    .col(nullable(WebhookEvents::Mode))
                    .col(ColumnDef::new(WebhookEvents::Payload).text().not_null())
                    .col(millis(WebhookEvents::CreatedAt))
                    .col(
                        ColumnDef::new(WebhookEvents::Dispatched)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_events_pending")
                    .table(WebhookEvents::Table)
                    .col(WebhookEvents::Dispatched)
                    .col(WebhookEvents::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(text(WebhookDeliveries::Id).primary_key())
                    .col(text(WebhookDeliveries::EventId))
                    .col(text(WebhookDeliveries::EndpointId))
                    .col(text(WebhookDeliveries::Status))
                    .col(millis(WebhookDeliveries::Attempts))
                    .col(millis(WebhookDeliveries::NextAttemptAt))
                    .col(millis_null(WebhookDeliveries::LeaseUntil))
                    .col(
                        ColumnDef::new(WebhookDeliveries::LastStatus)
                            .integer()
                            .null(),
                    )
                    .col(ColumnDef::new(WebhookDeliveries::LastError).text().null())
                    .col(
                        ColumnDef::new(WebhookDeliveries::ResponseExcerpt)
                            .text()
                            .null(),
                    )
                    .col(millis(WebhookDeliveries::CreatedAt))
                    .col(millis(WebhookDeliveries::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookDeliveries::Table, WebhookDeliveries::EventId)
                            .to(WebhookEvents::Table, WebhookEvents::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookDeliveries::Table, WebhookDeliveries::EndpointId)
                            .to(WebhookEndpoints::Table, WebhookEndpoints::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_deliveries_once")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::EventId)
                    .col(WebhookDeliveries::EndpointId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_deliveries_due")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::Status)
                    .col(WebhookDeliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_deliveries_endpoint")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::EndpointId)
                    .col(WebhookDeliveries::CreatedAt)
                    .to_owned(),
            )
            .await
    }
}
