//! `IntegrationStore` for `SqlStore`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use super::entities::{integration, integration_test};
use super::map::parse_tag;
use super::{SqlStore, map_err, page};
use crate::domain::model::{
    ConnectionTestRecord, IntegrationFilter, IntegrationRecord, Millis, Mode,
};
use crate::ports::{IntegrationStore, StoreError};

fn map_from(what: &str, id: &str, json: &str) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(json)
        .map_err(|_| StoreError::Internal(format!("integration {id}: {what} is not a JSON map")))
}

fn map_to(map: &BTreeMap<String, String>) -> String {
    // A map of strings always serialises.
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned())
}

fn from_row(m: integration::Model) -> Result<IntegrationRecord, StoreError> {
    Ok(IntegrationRecord {
        mode: parse_tag("mode", &m.id, &m.mode, Mode::from_tag)?,
        hints: map_from("hints", &m.id, &m.hints)?,
        settings: map_from("settings", &m.id, &m.settings)?,
        id: m.id,
        account_id: m.account_id,
        store_id: m.store_id,
        kind: m.kind,
        name: m.name,
        base_url: m.base_url,
        sealed_credentials: m.sealed_credentials,
        created_at: m.created_at,
        updated_at: m.updated_at,
        version: m.version,
    })
}

fn to_row(r: &IntegrationRecord) -> integration::ActiveModel {
    integration::ActiveModel {
        id: Set(r.id.clone()),
        account_id: Set(r.account_id.clone()),
        mode: Set(r.mode.tag().to_owned()),
        store_id: Set(r.store_id.clone()),
        kind: Set(r.kind.clone()),
        name: Set(r.name.clone()),
        base_url: Set(r.base_url.clone()),
        sealed_credentials: Set(r.sealed_credentials.clone()),
        hints: Set(map_to(&r.hints)),
        settings: Set(map_to(&r.settings)),
        created_at: Set(r.created_at),
        updated_at: Set(r.updated_at),
        version: Set(r.version),
    }
}

fn test_from(m: integration_test::Model) -> ConnectionTestRecord {
    ConnectionTestRecord {
        id: m.id,
        integration_id: m.integration_id,
        ok: m.ok,
        http_status: m.http_status,
        latency_ms: m.latency_ms,
        error: m.error,
        excerpt: m.excerpt,
        tested_at: m.tested_at,
    }
}

#[async_trait]
impl IntegrationStore for SqlStore {
    async fn insert_integration(&self, record: &IntegrationRecord) -> Result<(), StoreError> {
        let txn = self.db.begin().await.map_err(map_err)?;
        integration::Entity::insert(to_row(record))
            .exec(&txn)
            .await
            .map_err(map_err)?;
        self.commit(txn).await
    }

    async fn get_integration(&self, id: &str) -> Result<Option<IntegrationRecord>, StoreError> {
        integration::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await
            .map_err(map_err)?
            .map(from_row)
            .transpose()
    }

    async fn list_integrations(
        &self,
        filter: &IntegrationFilter,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<IntegrationRecord>, StoreError> {
        use integration::Column as C;
        let mut query = integration::Entity::find();
        if let Some(a) = &filter.account_id {
            query = query.filter(C::AccountId.eq(a.clone()));
        }
        if let Some(k) = &filter.kind {
            query = query.filter(C::Kind.eq(k.clone()));
        }
        if let Some(s) = &filter.store_id {
            query = query.filter(C::StoreId.eq(s.clone()));
        }
        page(&self.db, query, C::Id, after, limit, from_row).await
    }

    async fn update_integration(&self, record: &IntegrationRecord) -> Result<(), StoreError> {
        let txn = self.db.begin().await.map_err(map_err)?;
        let result = integration::Entity::update_many()
            .set(to_row(record))
            .filter(integration::Column::Id.eq(record.id.clone()))
            .filter(integration::Column::Version.eq(record.version - 1))
            .exec(&txn)
            .await
            .map_err(map_err)?;
        if result.rows_affected == 1 {
            self.commit(txn).await
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn delete_integration(&self, id: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin().await.map_err(map_err)?;
        integration_test::Entity::delete_many()
            .filter(integration_test::Column::IntegrationId.eq(id.to_owned()))
            .exec(&txn)
            .await
            .map_err(map_err)?;
        let gone = integration::Entity::delete_by_id(id.to_owned())
            .exec(&txn)
            .await
            .map_err(map_err)?
            .rows_affected;
        if gone == 0 {
            // Nothing changed: no audit event either.
            return Ok(false);
        }
        self.commit(txn).await?;
        Ok(true)
    }

    async fn insert_connection_test(
        &self,
        test: &ConnectionTestRecord,
        keep_after: Millis,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin().await.map_err(map_err)?;
        integration_test::Entity::delete_many()
            .filter(integration_test::Column::TestedAt.lt(keep_after))
            .exec(&txn)
            .await
            .map_err(map_err)?;
        integration_test::Entity::insert(integration_test::ActiveModel {
            id: Set(test.id.clone()),
            integration_id: Set(test.integration_id.clone()),
            ok: Set(test.ok),
            http_status: Set(test.http_status),
            latency_ms: Set(test.latency_ms),
            error: Set(test.error.clone()),
            excerpt: Set(test.excerpt.clone()),
            tested_at: Set(test.tested_at),
        })
        .exec(&txn)
        .await
        .map_err(map_err)?;
        self.commit(txn).await
    }

    async fn list_connection_tests(
        &self,
        integration_id: &str,
        limit: u64,
    ) -> Result<Vec<ConnectionTestRecord>, StoreError> {
        use integration_test::Column as C;
        Ok(integration_test::Entity::find()
            .filter(C::IntegrationId.eq(integration_id.to_owned()))
            .order_by_desc(C::TestedAt)
            .order_by_desc(C::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(map_err)?
            .into_iter()
            .map(test_from)
            .collect())
    }
}
