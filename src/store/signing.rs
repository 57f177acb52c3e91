//! `SigningStore` and `RevealStore` for `SqlStore`.

use async_trait::async_trait;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};

use super::entities::{reveal, signing_secret, signing_secret_version};
use super::map::{parse_hash, parse_tag};
use super::{SqlStore, page};
use crate::crypto::hex;
use crate::domain::model::UrlForm;
use crate::domain::model::{
    Millis, Mode, RevealRecord, SecretStatus, SecretVersionRecord, SigningSecretRecord,
};
use crate::ports::{RevealStore, SigningStore, StoreError};

fn secret_from(m: signing_secret::Model) -> Result<SigningSecretRecord, StoreError> {
    Ok(SigningSecretRecord {
        mode: parse_tag("mode", &m.id, &m.mode, Mode::from_tag)?,
        status: parse_tag("status", &m.id, &m.status, SecretStatus::from_tag)?,
        url_form: parse_tag("url_form", &m.id, &m.url_form, UrlForm::from_tag)?,
        id: m.id,
        account_id: m.account_id,
        name: m.name,
        current_version: m.current_version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn secret_to(s: &SigningSecretRecord) -> signing_secret::ActiveModel {
    signing_secret::ActiveModel {
        id: Set(s.id.clone()),
        account_id: Set(s.account_id.clone()),
        mode: Set(s.mode.tag().to_owned()),
        name: Set(s.name.clone()),
        status: Set(s.status.tag().to_owned()),
        current_version: Set(s.current_version),
        created_at: Set(s.created_at),
        updated_at: Set(s.updated_at),
        url_form: Set(s.url_form.tag().to_owned()),
    }
}

fn version_from(m: signing_secret_version::Model) -> SecretVersionRecord {
    SecretVersionRecord {
        secret_id: m.secret_id,
        version: m.version,
        sealed: m.sealed,
        created_at: m.created_at,
        retired_at: m.retired_at,
        overlap_ends_at: m.overlap_ends_at,
    }
}

fn version_to(v: &SecretVersionRecord) -> signing_secret_version::ActiveModel {
    signing_secret_version::ActiveModel {
        secret_id: Set(v.secret_id.clone()),
        version: Set(v.version),
        sealed: Set(v.sealed.clone()),
        created_at: Set(v.created_at),
        retired_at: Set(v.retired_at),
        overlap_ends_at: Set(v.overlap_ends_at),
    }
}

#[async_trait]
impl SigningStore for SqlStore {
    async fn insert_signing_secret(
        &self,
        secret: &SigningSecretRecord,
        first: &SecretVersionRecord,
    ) -> Result<(), StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        signing_secret::Entity::insert(secret_to(secret))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        signing_secret_version::Entity::insert(version_to(first))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        self.commit(txn).await
    }

    async fn get_signing_secret(
        &self,
        id: &str,
    ) -> Result<Option<(SigningSecretRecord, Vec<SecretVersionRecord>)>, StoreError> {
        let Some(secret) = signing_secret::Entity::find_by_id(id.to_owned())
            .one(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
        else {
            return Ok(None);
        };
        let versions = signing_secret_version::Entity::find()
            .filter(signing_secret_version::Column::SecretId.eq(id))
            .order_by_desc(signing_secret_version::Column::Version)
            .all(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .into_iter()
            .map(version_from)
            .collect();
        Ok(Some((secret_from(secret)?, versions)))
    }

    async fn list_signing_secrets(
        &self,
        account_id: Option<&str>,
        mode: Option<Mode>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<SigningSecretRecord>, StoreError> {
        let mut query = signing_secret::Entity::find();
        if let Some(a) = account_id {
            query = query.filter(signing_secret::Column::AccountId.eq(a));
        }
        if let Some(m) = mode {
            query = query.filter(signing_secret::Column::Mode.eq(m.tag()));
        }
        page(
            self.conn()?,
            query,
            signing_secret::Column::Id,
            after,
            limit,
            secret_from,
        )
        .await
    }

    async fn rotate_signing_secret(
        &self,
        updated: &SigningSecretRecord,
        retired_at: Millis,
        overlap_ends_at: Millis,
        new: &SecretVersionRecord,
    ) -> Result<(), StoreError> {
        let previous = updated.current_version - 1;
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        // The conditional update is the lock: a concurrent rotation finds the
        // version moved on and changes nothing.
        let moved = signing_secret::Entity::update_many()
            .col_expr(
                signing_secret::Column::CurrentVersion,
                Expr::value(updated.current_version),
            )
            .col_expr(
                signing_secret::Column::UpdatedAt,
                Expr::value(updated.updated_at),
            )
            .filter(signing_secret::Column::Id.eq(&updated.id))
            .filter(signing_secret::Column::CurrentVersion.eq(previous))
            .filter(signing_secret::Column::Status.eq(SecretStatus::Active.tag()))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        if moved.rows_affected != 1 {
            return Err(StoreError::Conflict);
        }
        signing_secret_version::Entity::update_many()
            .col_expr(
                signing_secret_version::Column::RetiredAt,
                Expr::value(retired_at),
            )
            .col_expr(
                signing_secret_version::Column::OverlapEndsAt,
                Expr::value(overlap_ends_at),
            )
            .filter(signing_secret_version::Column::SecretId.eq(&updated.id))
            .filter(signing_secret_version::Column::Version.eq(previous))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        signing_secret_version::Entity::insert(version_to(new))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        self.commit(txn).await
    }

    async fn revoke_signing_secret(&self, id: &str, now: Millis) -> Result<bool, StoreError> {
        let exists = signing_secret::Entity::find_by_id(id.to_owned())
            .one(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .is_some();
        if !exists {
            return Ok(false);
        }
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        signing_secret::Entity::update_many()
            .col_expr(
                signing_secret::Column::Status,
                Expr::value(SecretStatus::Revoked.tag()),
            )
            .col_expr(signing_secret::Column::UpdatedAt, Expr::value(now))
            .filter(signing_secret::Column::Id.eq(id))
            .filter(signing_secret::Column::Status.eq(SecretStatus::Active.tag()))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        self.commit(txn).await?;
        Ok(true)
    }

    async fn set_signing_secret_url_form(
        &self,
        id: &str,
        form: UrlForm,
        now: Millis,
    ) -> Result<bool, StoreError> {
        // In a transaction of its own, so that the change's audit event
        // (written by `commit`) lands with it or not at all.
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        let moved = signing_secret::Entity::update_many()
            .col_expr(signing_secret::Column::UrlForm, Expr::value(form.tag()))
            .col_expr(signing_secret::Column::UpdatedAt, Expr::value(now))
            .filter(signing_secret::Column::Id.eq(id))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        if moved.rows_affected != 1 {
            return Ok(false);
        }
        self.commit(txn).await?;
        Ok(true)
    }
}

fn reveal_from(m: reveal::Model) -> Result<RevealRecord, StoreError> {
    Ok(RevealRecord {
        token_hash: parse_hash("token_hash", "reveal", &m.token_hash)?,
        sealed: m.sealed,
        kind: m.kind,
        subject_id: m.subject_id,
        created_at: m.created_at,
        expires_at: m.expires_at,
    })
}

#[async_trait]
impl RevealStore for SqlStore {
    async fn insert_reveal(&self, r: &RevealRecord) -> Result<(), StoreError> {
        reveal::Entity::delete_many()
            .filter(reveal::Column::ExpiresAt.lte(r.created_at))
            .exec(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?;
        reveal::Entity::insert(reveal::ActiveModel {
            token_hash: Set(hex(&r.token_hash)),
            sealed: Set(r.sealed.clone()),
            kind: Set(r.kind.clone()),
            subject_id: Set(r.subject_id.clone()),
            created_at: Set(r.created_at),
            expires_at: Set(r.expires_at),
        })
        .exec(self.conn()?)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn take_reveal(
        &self,
        token_hash: &[u8; 32],
        now: Millis,
    ) -> Result<Option<RevealRecord>, StoreError> {
        // One statement decides: the row is gone for everyone after the
        // first DELETE, so a racing redemption gets no row back.
        let mut taken = reveal::Entity::delete_many()
            .filter(reveal::Column::TokenHash.eq(hex(token_hash)))
            .filter(reveal::Column::ExpiresAt.gt(now))
            .exec_with_returning(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?;
        match taken.len() {
            0 => Ok(None),
            1 => taken.pop().map(reveal_from).transpose(),
            n => Err(StoreError::Internal(format!(
                "{n} reveals share one token hash"
            ))),
        }
    }
}
