//! `ConsentStore` for `SqlStore`.

use async_trait::async_trait;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, TransactionTrait, sea_query::Expr,
};

use super::entities::{consent_link_use, flow_config, oauth_client};
use super::{SqlStore, page};
use crate::domain::model::{FlowConfigRecord, Millis};
use crate::ports::{ConsentStore, StoreError};

fn from_row(m: flow_config::Model) -> Result<FlowConfigRecord, StoreError> {
    Ok(FlowConfigRecord {
        id: m.id,
        account_id: m.account_id,
        name: m.name,
        display_name: m.display_name,
        logo_url: m.logo_url,
        primary_color: m.primary_color,
        support_url: m.support_url,
        default_language: m.default_language,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn to_row(r: &FlowConfigRecord) -> flow_config::ActiveModel {
    flow_config::ActiveModel {
        id: Set(r.id.clone()),
        account_id: Set(r.account_id.clone()),
        name: Set(r.name.clone()),
        display_name: Set(r.display_name.clone()),
        logo_url: Set(r.logo_url.clone()),
        primary_color: Set(r.primary_color.clone()),
        support_url: Set(r.support_url.clone()),
        default_language: Set(r.default_language.clone()),
        created_at: Set(r.created_at),
        updated_at: Set(r.updated_at),
    }
}

#[async_trait]
impl ConsentStore for SqlStore {
    // The three writes of a flow configuration commit with their staged
    // audit events (`SqlStore::commit`).
    async fn insert_flow_config(&self, record: &FlowConfigRecord) -> Result<(), StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        flow_config::Entity::insert(to_row(record))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        self.commit(txn).await
    }

    async fn get_flow_config(&self, id: &str) -> Result<Option<FlowConfigRecord>, StoreError> {
        flow_config::Entity::find_by_id(id.to_owned())
            .one(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .map(from_row)
            .transpose()
    }

    async fn find_flow_config(
        &self,
        account_id: &str,
        name: &str,
    ) -> Result<Option<FlowConfigRecord>, StoreError> {
        flow_config::Entity::find()
            .filter(flow_config::Column::AccountId.eq(account_id.to_owned()))
            .filter(flow_config::Column::Name.eq(name.to_owned()))
            .one(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .map(from_row)
            .transpose()
    }

    async fn list_flow_configs(
        &self,
        account_id: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<FlowConfigRecord>, StoreError> {
        let mut query = flow_config::Entity::find();
        if let Some(a) = account_id {
            query = query.filter(flow_config::Column::AccountId.eq(a.to_owned()));
        }
        page(
            self.conn()?,
            query,
            flow_config::Column::Id,
            after,
            limit,
            from_row,
        )
        .await
    }

    async fn update_flow_config(&self, record: &FlowConfigRecord) -> Result<bool, StoreError> {
        let mut row = to_row(record);
        // Neither the account nor the name moves.
        row.account_id = sea_orm::ActiveValue::NotSet;
        row.name = sea_orm::ActiveValue::NotSet;
        row.created_at = sea_orm::ActiveValue::NotSet;
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        let result = flow_config::Entity::update_many()
            .set(row)
            .filter(flow_config::Column::Id.eq(record.id.clone()))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        if result.rows_affected != 1 {
            return Ok(false);
        }
        self.commit(txn).await?;
        Ok(true)
    }

    async fn delete_flow_config(&self, id: &str) -> Result<bool, StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        let gone = flow_config::Entity::delete_by_id(id.to_owned())
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        if gone.rows_affected != 1 {
            return Ok(false);
        }
        self.commit(txn).await?;
        Ok(true)
    }

    async fn use_consent_link(
        &self,
        signature_hash: &[u8; 32],
        client_id: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<bool, StoreError> {
        consent_link_use::Entity::delete_many()
            .filter(consent_link_use::Column::ExpiresAt.lt(now))
            .exec(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?;
        let inserted = consent_link_use::Entity::insert(consent_link_use::ActiveModel {
            signature_hash: Set(signature_hash.to_vec()),
            client_id: Set(client_id.to_owned()),
            used_at: Set(now),
            expires_at: Set(expires_at),
        })
        .exec(self.conn()?)
        .await;
        match inserted.map_err(|e| self.fail(e)) {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn consent_link_used(&self, signature_hash: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(
            consent_link_use::Entity::find_by_id(signature_hash.to_vec())
                .one(self.conn()?)
                .await
                .map_err(|e| self.fail(e))?
                .is_some(),
        )
    }

    async fn set_client_signing_secret(
        &self,
        client_id: &str,
        secret_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        // The change and its staged audit event in one transaction.
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        let result = oauth_client::Entity::update_many()
            .col_expr(
                oauth_client::Column::SigningSecretId,
                Expr::value(secret_id.map(str::to_owned)),
            )
            .filter(oauth_client::Column::ClientId.eq(client_id.to_owned()))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        if result.rows_affected != 1 {
            // Nothing changed: no audit event either.
            return Ok(false);
        }
        self.commit(txn).await?;
        Ok(true)
    }
}
