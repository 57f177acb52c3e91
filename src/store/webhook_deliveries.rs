//! Deliveries: fanning outbox events out to endpoints, leasing due ones
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL: replicas never lease one
//! delivery twice; SQLite has one writer, which serialises the same
//! statements), and recording attempts.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, TransactionTrait,
};

use super::SqlStore;
use super::entities::{webhook_delivery, webhook_endpoint, webhook_event};
use super::webhooks::{delivery_from, endpoint_from, event_from, event_row};
use crate::domain::model::{
    AttemptOutcome, DeliveryRecord, DeliveryStatus, DueDelivery, EndpointRecord, Millis,
    OutboxEvent, WEBHOOK_DELIVERY_ID_PREFIX, new_id,
};
use crate::ports::StoreError;

impl SqlStore {
    pub(super) async fn dispatch(&self, now: Millis, limit: u64) -> Result<u64, StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        let mut q = webhook_event::Entity::find()
            .filter(webhook_event::Column::Dispatched.eq(false))
            .order_by_asc(webhook_event::Column::CreatedAt)
            .limit(limit);
        if self.is_postgres() {
            q = q.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let events = q.all(&txn).await.map_err(|e| self.fail(e))?;
        if events.is_empty() {
            return Ok(0);
        }
        let endpoints: Vec<EndpointRecord> = webhook_endpoint::Entity::find()
            .filter(webhook_endpoint::Column::Enabled.eq(true))
            .all(&txn)
            .await
            .map_err(|e| self.fail(e))?
            .into_iter()
            .map(endpoint_from)
            .collect::<Result<_, _>>()?;
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        let mut rows = Vec::new();
        for event in events.into_iter().map(event_from) {
            for endpoint in endpoints.iter().filter(|ep| ep.wants(&event)) {
                rows.push(webhook_delivery::ActiveModel {
                    id: Set(new_id(WEBHOOK_DELIVERY_ID_PREFIX)),
                    event_id: Set(event.id.clone()),
                    endpoint_id: Set(endpoint.id.clone()),
                    status: Set(DeliveryStatus::Pending.tag().to_owned()),
                    attempts: Set(0),
                    next_attempt_at: Set(now),
                    lease_until: Set(None),
                    last_status: Set(None),
                    last_error: Set(None),
                    response_excerpt: Set(None),
                    created_at: Set(now),
                    updated_at: Set(now),
                });
            }
        }
        for chunk in rows.chunks(100) {
            webhook_delivery::Entity::insert_many(chunk.to_vec())
                .on_conflict_do_nothing_on([
                    webhook_delivery::Column::EventId,
                    webhook_delivery::Column::EndpointId,
                ])
                .exec(&txn)
                .await
                .map_err(|e| self.fail(e))?;
        }
        let n = ids.len() as u64;
        webhook_event::Entity::update_many()
            .col_expr(webhook_event::Column::Dispatched, Expr::value(true))
            .filter(webhook_event::Column::Id.is_in(ids))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        txn.commit().await.map_err(|e| self.fail(e))?;
        Ok(n)
    }

    pub(super) async fn lease(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        use webhook_delivery::Column as C;
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        let mut q = webhook_delivery::Entity::find()
            .filter(C::Status.eq(DeliveryStatus::Pending.tag()))
            .filter(C::NextAttemptAt.lte(now))
            .filter(
                Condition::any()
                    .add(C::LeaseUntil.is_null())
                    .add(C::LeaseUntil.lte(now)),
            )
            // A disabled endpoint's deliveries wait, neither sent nor
            // spent, until it is enabled again.
            .filter(
                C::EndpointId.in_subquery(
                    Query::select()
                        .column(webhook_endpoint::Column::Id)
                        .from(webhook_endpoint::Entity)
                        .and_where(webhook_endpoint::Column::Enabled.eq(true))
                        .to_owned(),
                ),
            )
            .order_by_asc(C::NextAttemptAt)
            .limit(limit);
        if self.is_postgres() {
            q = q.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let rows = q.all(&txn).await.map_err(|e| self.fail(e))?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        webhook_delivery::Entity::update_many()
            .col_expr(C::LeaseUntil, Expr::value(lease_until))
            .filter(C::Id.is_in(ids))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        txn.commit().await.map_err(|e| self.fail(e))?;

        let event_ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
        let endpoint_ids: Vec<String> = rows.iter().map(|r| r.endpoint_id.clone()).collect();
        let events: HashMap<String, _> = webhook_event::Entity::find()
            .filter(webhook_event::Column::Id.is_in(event_ids))
            .all(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .into_iter()
            .map(|m| (m.id.clone(), event_from(m)))
            .collect();
        let mut endpoints: HashMap<String, EndpointRecord> = HashMap::new();
        for m in webhook_endpoint::Entity::find()
            .filter(webhook_endpoint::Column::Id.is_in(endpoint_ids.clone()))
            .all(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
        {
            let e = endpoint_from(m)?;
            endpoints.insert(e.id.clone(), e);
        }
        let secrets = self.secrets_of(endpoint_ids).await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in rows {
            let (Some(event), Some(endpoint)) =
                (events.get(&row.event_id), endpoints.get(&row.endpoint_id))
            else {
                continue;
            };
            let delivery = delivery_from(row, event.event_type.clone())?;
            due.push(DueDelivery {
                secrets: secrets
                    .iter()
                    .filter(|s| s.endpoint_id == endpoint.id)
                    .cloned()
                    .collect(),
                event: event.clone(),
                endpoint: endpoint.clone(),
                delivery,
            });
        }
        Ok(due)
    }

    /// One transaction for a group of attempts: on SQLite each commit is a sync of
    /// the log, and one per delivery capped the worker at a few hundred a second.
    pub(super) async fn finish(&self, done: &[(String, AttemptOutcome)]) -> Result<(), StoreError> {
        use webhook_delivery::Column as C;
        if done.is_empty() {
            return Ok(());
        }
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        for (id, o) in done {
            webhook_delivery::Entity::update_many()
                .col_expr(C::Status, Expr::value(o.status.tag()))
                .col_expr(C::Attempts, Expr::value(o.attempts))
                .col_expr(C::NextAttemptAt, Expr::value(o.next_attempt_at))
                .col_expr(C::LeaseUntil, Expr::value(Option::<i64>::None))
                .col_expr(C::LastStatus, Expr::value(o.last_status))
                .col_expr(C::LastError, Expr::value(o.last_error.clone()))
                .col_expr(C::ResponseExcerpt, Expr::value(o.response_excerpt.clone()))
                .col_expr(C::UpdatedAt, Expr::value(o.at))
                .filter(C::Id.eq(id))
                .exec(&txn)
                .await
                .map_err(|e| self.fail(e))?;
        }
        txn.commit().await.map_err(|e| self.fail(e))
    }

    pub(super) async fn note_result(
        &self,
        endpoint_id: &str,
        ok: bool,
        now: Millis,
        disable_before: Millis,
    ) -> Result<bool, StoreError> {
        use webhook_endpoint::Column as C;
        let conn = self.conn()?;
        if ok {
            webhook_endpoint::Entity::update_many()
                .col_expr(C::FailingSince, Expr::value(Option::<i64>::None))
                .filter(C::Id.eq(endpoint_id))
                .filter(C::FailingSince.is_not_null())
                .exec(conn)
                .await
                .map_err(|e| self.fail(e))?;
            return Ok(false);
        }
        webhook_endpoint::Entity::update_many()
            .col_expr(C::FailingSince, Expr::value(now))
            .filter(C::Id.eq(endpoint_id))
            .filter(C::FailingSince.is_null())
            .exec(conn)
            .await
            .map_err(|e| self.fail(e))?;
        let disabled = webhook_endpoint::Entity::update_many()
            .col_expr(C::Enabled, Expr::value(false))
            .col_expr(
                C::DisabledReason,
                Expr::value("deliveries failed for 5 days"),
            )
            .col_expr(C::UpdatedAt, Expr::value(now))
            .filter(C::Id.eq(endpoint_id))
            .filter(C::Enabled.eq(true))
            .filter(C::FailingSince.lt(disable_before))
            .exec(conn)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(disabled.rows_affected == 1)
    }

    pub(super) async fn deliveries(
        &self,
        endpoint_id: &str,
        status: Option<DeliveryStatus>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        use webhook_delivery::Column as C;
        let mut q = webhook_delivery::Entity::find().filter(C::EndpointId.eq(endpoint_id));
        if let Some(s) = status {
            q = q.filter(C::Status.eq(s.tag()));
        }
        if let Some(a) = after {
            q = q.filter(C::Id.lt(a));
        }
        let rows = q
            .order_by_desc(C::Id)
            .limit(limit)
            .all(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?;
        let event_ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
        let types: HashMap<String, String> = webhook_event::Entity::find()
            .filter(webhook_event::Column::Id.is_in(event_ids))
            .all(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .into_iter()
            .map(|m| (m.id, m.event_type))
            .collect();
        rows.into_iter()
            .map(|m| {
                let event_type = types.get(&m.event_id).cloned().unwrap_or_default();
                delivery_from(m, event_type)
            })
            .collect()
    }

    /// An event for one endpoint alone: the event row (already dispatched,
    /// so the fan-out skips it) and its delivery, due at once, in one
    /// transaction with the call's audit event. `false` if the endpoint is gone.
    pub(super) async fn enqueue_alone(
        &self,
        event: &OutboxEvent,
        delivery: &DeliveryRecord,
    ) -> Result<bool, StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        // The write first: on SQLite a transaction that reads before it
        // writes cannot wait for the lock (it fails busy at once).
        let mut row = event_row(event);
        row.dispatched = Set(true);
        webhook_event::Entity::insert(row)
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        let exists = webhook_endpoint::Entity::find_by_id(delivery.endpoint_id.clone())
            .one(&txn)
            .await
            .map_err(|e| self.fail(e))?
            .is_some();
        if !exists {
            // Dropped uncommitted: rolled back.
            return Ok(false);
        }
        webhook_delivery::Entity::insert(webhook_delivery::ActiveModel {
            id: Set(delivery.id.clone()),
            event_id: Set(delivery.event_id.clone()),
            endpoint_id: Set(delivery.endpoint_id.clone()),
            status: Set(delivery.status.tag().to_owned()),
            attempts: Set(delivery.attempts),
            next_attempt_at: Set(delivery.next_attempt_at),
            lease_until: Set(None),
            last_status: Set(None),
            last_error: Set(None),
            response_excerpt: Set(None),
            created_at: Set(delivery.created_at),
            updated_at: Set(delivery.updated_at),
        })
        .exec(&txn)
        .await
        .map_err(|e| self.fail(e))?;
        self.commit(txn).await?;
        Ok(true)
    }

    /// Two deletes, each of the oldest `limit` rows its condition picks,
    /// in one transaction. Each checks its condition again on the rows it
    /// deletes (on PostgreSQL a delivery retried meanwhile is pending, and
    /// stays), and the first statement writes: a transaction that read
    /// first and wrote later would fail on SQLite ("database is locked")
    /// whenever the delivery worker wrote in between.
    pub(super) async fn purge(&self, before: Millis, limit: u64) -> Result<u64, StoreError> {
        use webhook_delivery::Column as D;
        use webhook_event::Column as E;
        let finished = || {
            Condition::all()
                .add(D::Status.ne(DeliveryStatus::Pending.tag()))
                .add(D::UpdatedAt.lt(before))
        };
        // An event is kept while a delivery of it is.
        let unreferenced = || {
            Condition::all()
                .add(E::Dispatched.eq(true))
                .add(E::CreatedAt.lt(before))
                .add(
                    Expr::exists(
                        Query::select()
                            .expr(Expr::val(1))
                            .from(webhook_delivery::Entity)
                            .and_where(
                                Expr::col((webhook_delivery::Entity, D::EventId))
                                    .equals((webhook_event::Entity, E::Id)),
                            )
                            .to_owned(),
                    )
                    .not(),
                )
        };
        let oldest_deliveries = webhook_delivery::Entity::find()
            .select_only()
            .column(D::Id)
            .filter(finished())
            .order_by_asc(D::UpdatedAt)
            .limit(limit)
            .into_query();
        let oldest_events = webhook_event::Entity::find()
            .select_only()
            .column(E::Id)
            .filter(unreferenced())
            .order_by_asc(E::CreatedAt)
            .limit(limit)
            .into_query();
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        let deliveries = webhook_delivery::Entity::delete_many()
            .filter(D::Id.in_subquery(oldest_deliveries))
            .filter(finished())
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?
            .rows_affected;
        let events = webhook_event::Entity::delete_many()
            .filter(E::Id.in_subquery(oldest_events))
            .filter(unreferenced())
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?
            .rows_affected;
        txn.commit().await.map_err(|e| self.fail(e))?;
        Ok(deliveries + events)
    }

    pub(super) async fn retry(&self, id: &str, now: Millis) -> Result<bool, StoreError> {
        use webhook_delivery::Column as C;
        let result = webhook_delivery::Entity::update_many()
            .col_expr(C::Status, Expr::value(DeliveryStatus::Pending.tag()))
            .col_expr(C::NextAttemptAt, Expr::value(now))
            .col_expr(C::LeaseUntil, Expr::value(Option::<i64>::None))
            .col_expr(C::UpdatedAt, Expr::value(now))
            .filter(C::Id.eq(id))
            .exec(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(result.rows_affected == 1)
    }
}
