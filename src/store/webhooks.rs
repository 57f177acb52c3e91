//! Webhook endpoints, their sealed secrets, and the outbox rows a commit
//! writes beside its change. Deliveries: `webhook_deliveries.rs`.

use async_trait::async_trait;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};

use super::entities::{webhook_delivery, webhook_endpoint, webhook_event, webhook_secret};
use super::{SqlStore, page};
use crate::domain::model::{
    AttemptOutcome, DeliveryRecord, DeliveryStatus, DueDelivery, EndpointRecord,
    EndpointSecretRecord, Millis, OutboxEvent, SignatureFormat,
};
use crate::ports::{StoreError, WebhookStore};

const INSERT_CHUNK: usize = 200;

pub(super) fn event_row(e: &OutboxEvent) -> webhook_event::ActiveModel {
    webhook_event::ActiveModel {
        id: Set(e.id.clone()),
        event_type: Set(e.event_type.clone()),
        account_id: Set(e.account_id.clone()),
        mode: Set(e.mode.clone()),
        payload: Set(e.data.clone()),
        created_at: Set(e.created_at),
        dispatched: Set(false),
    }
}

pub(super) fn event_from(m: webhook_event::Model) -> OutboxEvent {
    OutboxEvent {
        id: m.id,
        event_type: m.event_type,
        account_id: m.account_id,
        mode: m.mode,
        data: m.payload,
        created_at: m.created_at,
    }
}

/// Writes outbox events on `conn`: inside a mutation's transaction, or an
/// `enqueue`'s own.
pub(crate) async fn append_outbox_in<C: ConnectionTrait>(
    conn: &C,
    events: &[OutboxEvent],
) -> Result<(), sea_orm::DbErr> {
    for chunk in events.chunks(INSERT_CHUNK) {
        webhook_event::Entity::insert_many(chunk.iter().map(event_row))
            .exec(conn)
            .await?;
    }
    Ok(())
}

fn endpoint_row(e: &EndpointRecord) -> webhook_endpoint::ActiveModel {
    webhook_endpoint::ActiveModel {
        id: Set(e.id.clone()),
        account_id: Set(e.account_id.clone()),
        url: Set(e.url.clone()),
        event_types: Set(serde_json::Value::from(e.event_types.clone()).to_string()),
        description: Set(e.description.clone()),
        format: Set(e.format.tag().to_owned()),
        enabled: Set(e.enabled),
        disabled_reason: Set(e.disabled_reason.clone()),
        failing_since: Set(e.failing_since),
        created_at: Set(e.created_at),
        updated_at: Set(e.updated_at),
        version: Set(e.version),
    }
}

pub(super) fn endpoint_from(m: webhook_endpoint::Model) -> Result<EndpointRecord, StoreError> {
    let format = SignatureFormat::from_tag(&m.format).ok_or_else(|| {
        StoreError::Internal(format!("endpoint {} has format {:?}", m.id, m.format))
    })?;
    let event_types: Vec<String> = serde_json::from_str(&m.event_types)
        .map_err(|e| StoreError::Internal(format!("endpoint {} event types: {e}", m.id)))?;
    Ok(EndpointRecord {
        id: m.id,
        account_id: m.account_id,
        url: m.url,
        event_types,
        description: m.description,
        format,
        enabled: m.enabled,
        disabled_reason: m.disabled_reason,
        failing_since: m.failing_since,
        created_at: m.created_at,
        updated_at: m.updated_at,
        version: m.version,
    })
}

fn secret_row(s: &EndpointSecretRecord) -> webhook_secret::ActiveModel {
    webhook_secret::ActiveModel {
        endpoint_id: Set(s.endpoint_id.clone()),
        version: Set(s.version),
        sealed: Set(s.sealed.clone()),
        created_at: Set(s.created_at),
        expires_at: Set(s.expires_at),
    }
}

pub(super) fn secret_from(m: webhook_secret::Model) -> EndpointSecretRecord {
    EndpointSecretRecord {
        endpoint_id: m.endpoint_id,
        version: m.version,
        sealed: m.sealed,
        created_at: m.created_at,
        expires_at: m.expires_at,
    }
}

/// A delivery row, with its event's type (looked up beside it).
pub(super) fn delivery_from(
    m: webhook_delivery::Model,
    event_type: String,
) -> Result<DeliveryRecord, StoreError> {
    let status = DeliveryStatus::from_tag(&m.status).ok_or_else(|| {
        StoreError::Internal(format!("delivery {} has status {:?}", m.id, m.status))
    })?;
    Ok(DeliveryRecord {
        id: m.id,
        event_id: m.event_id,
        event_type,
        endpoint_id: m.endpoint_id,
        status,
        attempts: m.attempts,
        next_attempt_at: m.next_attempt_at,
        last_status: m.last_status,
        last_error: m.last_error,
        response_excerpt: m.response_excerpt,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

impl SqlStore {
    pub(super) async fn secrets_of(
        &self,
        endpoint_ids: Vec<String>,
    ) -> Result<Vec<EndpointSecretRecord>, StoreError> {
        Ok(webhook_secret::Entity::find()
            .filter(webhook_secret::Column::EndpointId.is_in(endpoint_ids))
            .order_by_desc(webhook_secret::Column::Version)
            .all(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .into_iter()
            .map(secret_from)
            .collect())
    }
}

#[async_trait]
impl WebhookStore for SqlStore {
    async fn enqueue(&self, events: Vec<OutboxEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        append_outbox_in(&txn, &events)
            .await
            .map_err(|e| self.fail(e))?;
        txn.commit().await.map_err(|e| self.fail(e))
    }

    async fn insert_endpoint(
        &self,
        endpoint: &EndpointRecord,
        secret: &EndpointSecretRecord,
    ) -> Result<(), StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        webhook_endpoint::Entity::insert(endpoint_row(endpoint))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        webhook_secret::Entity::insert(secret_row(secret))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        self.commit(txn).await
    }

    async fn get_endpoint(
        &self,
        id: &str,
    ) -> Result<Option<(EndpointRecord, Vec<EndpointSecretRecord>)>, StoreError> {
        let Some(m) = webhook_endpoint::Entity::find_by_id(id.to_owned())
            .one(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
        else {
            return Ok(None);
        };
        let secrets = self.secrets_of(vec![id.to_owned()]).await?;
        Ok(Some((endpoint_from(m)?, secrets)))
    }

    async fn list_endpoints(
        &self,
        account_id: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<EndpointRecord>, StoreError> {
        let mut q = webhook_endpoint::Entity::find();
        if let Some(a) = account_id {
            q = q.filter(webhook_endpoint::Column::AccountId.eq(a));
        }
        page(
            self.conn()?,
            q,
            webhook_endpoint::Column::Id,
            after,
            limit,
            endpoint_from,
        )
        .await
    }

    async fn update_endpoint(&self, endpoint: &EndpointRecord) -> Result<(), StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        let result = webhook_endpoint::Entity::update_many()
            .set(endpoint_row(endpoint))
            .filter(webhook_endpoint::Column::Id.eq(endpoint.id.clone()))
            .filter(webhook_endpoint::Column::Version.eq(endpoint.version - 1))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        if result.rows_affected != 1 {
            return Err(StoreError::Conflict);
        }
        self.commit(txn).await
    }

    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        webhook_delivery::Entity::delete_many()
            .filter(webhook_delivery::Column::EndpointId.eq(id))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        webhook_secret::Entity::delete_many()
            .filter(webhook_secret::Column::EndpointId.eq(id))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        let gone = webhook_endpoint::Entity::delete_by_id(id.to_owned())
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?
            .rows_affected;
        if gone == 0 {
            return Ok(false);
        }
        self.commit(txn).await?;
        Ok(true)
    }

    async fn rotate_endpoint_secret(
        &self,
        new: &EndpointSecretRecord,
        old_until: Millis,
    ) -> Result<(), StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        webhook_secret::Entity::update_many()
            .col_expr(webhook_secret::Column::ExpiresAt, Expr::value(old_until))
            .filter(webhook_secret::Column::EndpointId.eq(new.endpoint_id.clone()))
            .filter(webhook_secret::Column::Version.lt(new.version))
            .filter(
                sea_orm::Condition::any()
                    .add(webhook_secret::Column::ExpiresAt.is_null())
                    .add(webhook_secret::Column::ExpiresAt.gt(old_until)),
            )
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        webhook_secret::Entity::insert(secret_row(new))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        self.commit(txn).await
    }

    async fn dispatch_events(&self, now: Millis, limit: u64) -> Result<u64, StoreError> {
        self.dispatch(now, limit).await
    }

    async fn lease_deliveries(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        self.lease(now, lease_until, limit).await
    }

    async fn finish_deliveries(&self, done: &[(String, AttemptOutcome)]) -> Result<(), StoreError> {
        self.finish(done).await
    }

    async fn endpoint_result(
        &self,
        endpoint_id: &str,
        ok: bool,
        now: Millis,
        disable_before: Millis,
    ) -> Result<bool, StoreError> {
        self.note_result(endpoint_id, ok, now, disable_before).await
    }

    async fn list_deliveries(
        &self,
        endpoint_id: &str,
        status: Option<DeliveryStatus>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.deliveries(endpoint_id, status, after, limit).await
    }

    async fn retry_delivery(&self, id: &str, now: Millis) -> Result<bool, StoreError> {
        self.retry(id, now).await
    }

    async fn purge_webhooks(&self, before: Millis, limit: u64) -> Result<u64, StoreError> {
        self.purge(before, limit).await
    }

    async fn enqueue_to(
        &self,
        event: &OutboxEvent,
        delivery: &DeliveryRecord,
    ) -> Result<bool, StoreError> {
        self.enqueue_alone(event, delivery).await
    }
}
