//! The audit trail's rows, and the commit that writes a mutation's staged
//! events inside its transaction (see `ports::audit_scope`).

use async_trait::async_trait;
use sea_orm::sea_query::LikeExpr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, TransactionTrait,
};

use super::SqlStore;
use super::entities::audit_event;
use crate::domain::model::{AuditCursor, AuditEvent, AuditFilter, AuditOutcome, Millis};
use crate::ports::audit_scope as context;
use crate::ports::{AuditStore, StoreError};

/// Rows per INSERT statement (well under SQLite's bound-parameter limit).
const INSERT_CHUNK: usize = 200;

fn to_row(e: &AuditEvent) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        id: Set(e.id.clone()),
        time: Set(e.time),
        actor: Set(e.actor.clone()),
        action: Set(e.action.clone()),
        outcome: Set(e.outcome.tag().to_owned()),
        account_id: Set(e.account_id.clone()),
        mode: Set(e.mode.clone()),
        target_type: Set(e.target_type.clone()),
        target_id: Set(e.target_id.clone()),
        summary: Set(e.summary.clone()),
        client_ip: Set(e.client_ip.clone()),
        user_agent: Set(e.user_agent.clone()),
        correlation_id: Set(e.correlation_id.clone()),
        count: Set(e.count),
    }
}

fn from_row(m: audit_event::Model) -> Result<AuditEvent, StoreError> {
    let outcome = AuditOutcome::from_tag(&m.outcome).ok_or_else(|| {
        StoreError::Internal(format!("audit event {} has outcome {:?}", m.id, m.outcome))
    })?;
    Ok(AuditEvent {
        id: m.id,
        time: m.time,
        actor: m.actor,
        action: m.action,
        outcome,
        account_id: m.account_id,
        mode: m.mode,
        target_type: m.target_type,
        target_id: m.target_id,
        summary: m.summary,
        client_ip: m.client_ip,
        user_agent: m.user_agent,
        correlation_id: m.correlation_id,
        count: m.count,
    })
}

/// Writes `events` on `conn`: inside a mutation's transaction, or a batch's own.
pub(crate) async fn append_events_in<C: ConnectionTrait>(
    conn: &C,
    events: &[AuditEvent],
) -> Result<(), sea_orm::DbErr> {
    for chunk in events.chunks(INSERT_CHUNK) {
        audit_event::Entity::insert_many(chunk.iter().map(to_row))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// `LIKE 'prefix%'` with the prefix's own `%`, `_` and `\` taken literally.
fn like_prefix(prefix: &str) -> LikeExpr {
    LikeExpr::new(like_pattern(prefix)).escape('\\')
}

fn like_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl SqlStore {
    /// Commits a mutation's transaction with every audit event staged in
    /// this call's audit scope written inside it: the change and its event
    /// commit together or not at all. A failed commit puts the events back.
    pub(super) async fn commit(&self, txn: DatabaseTransaction) -> Result<(), StoreError> {
        let staged = context::take_all();
        if !staged.is_empty() {
            let written = match append_events_in(&txn, &staged.audit).await {
                Ok(()) => super::webhooks::append_outbox_in(&txn, &staged.outbox).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                context::restore_all(staged);
                return Err(self.fail(e));
            }
        }
        match txn.commit().await {
            Ok(()) => Ok(()),
            Err(e) => {
                context::restore_all(staged);
                Err(self.fail(e))
            }
        }
    }
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_batch(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        append_events_in(&txn, &events)
            .await
            .map_err(|e| self.fail(e))?;
        txn.commit().await.map_err(|e| self.fail(e))
    }

    async fn get_event(&self, id: &str) -> Result<Option<AuditEvent>, StoreError> {
        audit_event::Entity::find_by_id(id.to_owned())
            .one(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .map(from_row)
            .transpose()
    }

    async fn list_events(
        &self,
        f: &AuditFilter,
        before: Option<&AuditCursor>,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        use audit_event::Column as C;
        let mut q = audit_event::Entity::find();
        if let Some(a) = &f.account_id {
            q = q.filter(C::AccountId.eq(a.clone()));
        }
        if let Some(k) = &f.key_id {
            q = q
                .filter(C::TargetType.eq("key"))
                .filter(C::TargetId.eq(k.clone()));
        }
        if let Some(p) = &f.action_prefix {
            q = q.filter(C::Action.like(like_prefix(p)));
        }
        if let Some(a) = &f.actor {
            q = q.filter(C::Actor.eq(a.clone()));
        }
        if let Some(from) = f.from {
            q = q.filter(C::Time.gte(from));
        }
        if let Some(to) = f.to {
            q = q.filter(C::Time.lt(to));
        }
        if let Some(o) = f.outcome {
            q = q.filter(C::Outcome.eq(o.tag()));
        }
        if let Some(c) = before {
            q = q.filter(
                Condition::any().add(C::Time.lt(c.time)).add(
                    Condition::all()
                        .add(C::Time.eq(c.time))
                        .add(C::Id.lt(c.id.clone())),
                ),
            );
        }
        q.order_by_desc(C::Time)
            .order_by_desc(C::Id)
            .limit(limit)
            .all(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .into_iter()
            .map(from_row)
            .collect()
    }

    async fn purge_events(&self, before: Millis, limit: u64) -> Result<u64, StoreError> {
        use audit_event::Column as C;
        // One statement, so no transaction that reads first and writes
        // later (on SQLite that fails, "database is locked", when a
        // mutation's events are written in between); the oldest ids by a
        // subquery, since DELETE … LIMIT is not portable.
        let oldest = audit_event::Entity::find()
            .select_only()
            .column(C::Id)
            .filter(C::Time.lt(before))
            .order_by_asc(C::Time)
            .limit(limit)
            .into_query();
        let result = audit_event::Entity::delete_many()
            .filter(C::Id.in_subquery(oldest))
            .filter(C::Time.lt(before))
            .exec(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(result.rows_affected)
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_wildcards_in_a_prefix_are_literal() {
        assert_eq!(like_pattern("key_a%"), "key\\_a\\%%");
    }
}
