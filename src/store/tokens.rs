//! `TokenStore` over the same SeaORM connection. Single-use and rotation are
//! conditional updates (`… WHERE used_at IS NULL`), so of two racing callers
//! exactly one wins, on SQLite and PostgreSQL alike. Revocations tell every
//! replica to drop what it cached.

use async_trait::async_trait;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};

use super::entities::{auth_code, oauth_client, refresh_token, revoked_token, signing_key};
use super::map::{json_list, parse_list, parse_tag};
use super::{INVALIDATE_ALL, SqlStore};
use crate::domain::model::{
    AuthCodeRecord, ClientRecord, HolderKind, Millis, Mode, RefreshRecord, SigningKeyRecord,
};
use crate::ports::{StoreError, TokenStore};

fn hash32(what: &str, v: &[u8]) -> Result<[u8; 32], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Internal(format!("{what} hash is not 32 bytes")))
}

fn mode(id: &str, tag: &str) -> Result<Mode, StoreError> {
    parse_tag("mode", id, tag, Mode::from_tag)
}

fn key_from(m: signing_key::Model) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: m.kid,
        algorithm: m.algorithm,
        private_sealed: m.private_sealed,
        public_key: m.public_key,
        created_at: m.created_at,
        retired_at: m.retired_at,
    }
}

fn key_to(k: &SigningKeyRecord) -> signing_key::ActiveModel {
    signing_key::ActiveModel {
        kid: Set(k.kid.clone()),
        algorithm: Set(k.algorithm.clone()),
        private_sealed: Set(k.private_sealed.clone()),
        public_key: Set(k.public_key.clone()),
        created_at: Set(k.created_at),
        retired_at: Set(k.retired_at),
        active_slot: Set(k.retired_at.is_none().then_some(1)),
    }
}

fn client_from(m: oauth_client::Model) -> Result<ClientRecord, StoreError> {
    Ok(ClientRecord {
        mode: mode(&m.client_id, &m.mode)?,
        secret_hash: hash32("client secret", &m.secret_hash)?,
        redirect_uris: parse_list("redirect_uris", &m.client_id, &m.redirect_uris)?,
        grant_types: parse_list("grant_types", &m.client_id, &m.grant_types)?,
        scopes: parse_list("scopes", &m.client_id, &m.scopes)?,
        client_id: m.client_id,
        account_id: m.account_id,
        name: m.name,
        created_at: m.created_at,
        signing_secret_id: m.signing_secret_id,
    })
}

fn code_from(m: auth_code::Model) -> Result<AuthCodeRecord, StoreError> {
    Ok(AuthCodeRecord {
        code_hash: hash32("code", &m.code_hash)?,
        client_id: m.client_id,
        subject: m.subject,
        redirect_uri: m.redirect_uri,
        scope: m.scope,
        code_challenge: m.code_challenge,
        family_id: m.family_id,
        expires_at: m.expires_at,
        used_at: m.used_at,
        created_at: m.created_at,
    })
}

fn refresh_from(m: refresh_token::Model) -> Result<RefreshRecord, StoreError> {
    Ok(RefreshRecord {
        token_hash: hash32("refresh token", &m.token_hash)?,
        holder_kind: parse_tag(
            "holder kind",
            &m.family_id,
            &m.holder_kind,
            HolderKind::from_tag,
        )?,
        mode: mode(&m.family_id, &m.mode)?,
        family_id: m.family_id,
        holder_id: m.holder_id,
        account_id: m.account_id,
        subject: m.subject,
        scope: m.scope,
        access_jti: m.access_jti,
        access_expires_at: m.access_expires_at,
        expires_at: m.expires_at,
        created_at: m.created_at,
        rotated_at: m.rotated_at,
        revoked_at: m.revoked_at,
    })
}

fn refresh_to(r: &RefreshRecord) -> refresh_token::ActiveModel {
    refresh_token::ActiveModel {
        token_hash: Set(r.token_hash.to_vec()),
        family_id: Set(r.family_id.clone()),
        holder_kind: Set(r.holder_kind.tag().to_owned()),
        holder_id: Set(r.holder_id.clone()),
        account_id: Set(r.account_id.clone()),
        mode: Set(r.mode.tag().to_owned()),
        subject: Set(r.subject.clone()),
        scope: Set(r.scope.clone()),
        access_jti: Set(r.access_jti.clone()),
        access_expires_at: Set(r.access_expires_at),
        expires_at: Set(r.expires_at),
        created_at: Set(r.created_at),
        rotated_at: Set(r.rotated_at),
        revoked_at: Set(r.revoked_at),
    }
}

impl SqlStore {
    /// Revokes the refresh tokens matching `filter` and the access tokens
    /// issued with them, and tells every replica.
    async fn revoke_refresh_where(
        &self,
        filter: sea_orm::Condition,
        now: Millis,
    ) -> Result<(), StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        self.revoke_refresh_in(&txn, filter, now).await?;
        self.commit(txn).await
    }

    /// Revokes the matching refresh tokens and their live access tokens
    /// inside `txn`, and tells every replica to drop its verified tokens
    /// when `txn` commits.
    async fn revoke_refresh_in(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        filter: sea_orm::Condition,
        now: Millis,
    ) -> Result<(), StoreError> {
        // Write first: on SQLite a transaction that reads and then writes
        // fails at once (SQLITE_BUSY) when another connection committed in
        // between; one that starts with its write waits its turn instead.
        refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
            .filter(filter.clone())
            .filter(refresh_token::Column::RevokedAt.is_null())
            .exec(txn)
            .await
            .map_err(|e| self.fail(e))?;
        let rows = refresh_token::Entity::find()
            .filter(filter)
            .all(txn)
            .await
            .map_err(|e| self.fail(e))?;
        let revoked: Vec<revoked_token::ActiveModel> = rows
            .iter()
            .filter(|r| r.access_expires_at > now)
            .map(|r| revoked_token::ActiveModel {
                jti: Set(r.access_jti.clone()),
                expires_at: Set(r.access_expires_at),
            })
            .collect();
        if !revoked.is_empty() {
            revoked_token::Entity::insert_many(revoked)
                .on_conflict_do_nothing_on([revoked_token::Column::Jti])
                .exec(txn)
                .await
                .map_err(|e| self.fail(e))?;
        }
        self.notify(txn, INVALIDATE_ALL).await
    }
}

#[async_trait]
impl TokenStore for SqlStore {
    fn known_down(&self) -> bool {
        self.circuit.is_open()
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        Ok(signing_key::Entity::find()
            .order_by_asc(signing_key::Column::CreatedAt)
            .all(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .into_iter()
            .map(key_from)
            .collect())
    }

    async fn rotate_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        signing_key::Entity::update_many()
            .col_expr(signing_key::Column::RetiredAt, Expr::value(key.created_at))
            .col_expr(
                signing_key::Column::ActiveSlot,
                Expr::value(Option::<i16>::None),
            )
            .filter(signing_key::Column::RetiredAt.is_null())
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        signing_key::Entity::insert(key_to(key))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        self.commit(txn).await
    }

    async fn insert_first_signing_key(&self, key: &SigningKeyRecord) -> Result<bool, StoreError> {
        // The unique active slot decides between racing replicas.
        match signing_key::Entity::insert(key_to(key))
            .exec(self.conn()?)
            .await
            .map_err(|e| self.fail(e))
        {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn insert_client(&self, c: &ClientRecord) -> Result<(), StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        oauth_client::Entity::insert(oauth_client::ActiveModel {
            client_id: Set(c.client_id.clone()),
            account_id: Set(c.account_id.clone()),
            mode: Set(c.mode.tag().to_owned()),
            name: Set(c.name.clone()),
            secret_hash: Set(c.secret_hash.to_vec()),
            redirect_uris: Set(json_list(&c.redirect_uris)),
            grant_types: Set(json_list(&c.grant_types)),
            scopes: Set(json_list(&c.scopes)),
            created_at: Set(c.created_at),
            signing_secret_id: Set(c.signing_secret_id.clone()),
        })
        .exec(&txn)
        .await
        .map_err(|e| self.fail(e))?;
        self.commit(txn).await
    }

    async fn get_client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        oauth_client::Entity::find_by_id(client_id.to_owned())
            .one(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .map(client_from)
            .transpose()
    }

    async fn list_clients(
        &self,
        account_id: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<ClientRecord>, StoreError> {
        let mut query = oauth_client::Entity::find();
        if let Some(account) = account_id {
            query = query.filter(oauth_client::Column::AccountId.eq(account.to_owned()));
        }
        super::page(
            self.conn()?,
            query,
            oauth_client::Column::ClientId,
            after,
            limit,
            client_from,
        )
        .await
    }

    async fn delete_client(&self, client_id: &str, now: Millis) -> Result<bool, StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        let deleted = oauth_client::Entity::delete_by_id(client_id.to_owned())
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        if deleted.rows_affected == 0 {
            return Ok(false);
        }
        // The client and the tokens it holds go together: a crash between
        // two commits would leave its refresh tokens redeemable by nobody
        // yet its access tokens unrevoked.
        let holder =
            sea_orm::Condition::all().add(refresh_token::Column::HolderId.eq(client_id.to_owned()));
        self.revoke_refresh_in(&txn, holder, now).await?;
        self.commit(txn).await?;
        Ok(true)
    }

    async fn insert_code(&self, c: &AuthCodeRecord) -> Result<(), StoreError> {
        auth_code::Entity::insert(auth_code::ActiveModel {
            code_hash: Set(c.code_hash.to_vec()),
            client_id: Set(c.client_id.clone()),
            subject: Set(c.subject.clone()),
            redirect_uri: Set(c.redirect_uri.clone()),
            scope: Set(c.scope.clone()),
            code_challenge: Set(c.code_challenge.clone()),
            family_id: Set(c.family_id.clone()),
            expires_at: Set(c.expires_at),
            used_at: Set(c.used_at),
            created_at: Set(c.created_at),
            replayed_at: Set(None),
        })
        .exec(self.conn()?)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn use_code(
        &self,
        code_hash: &[u8; 32],
        client_id: &str,
        now: Millis,
    ) -> Result<Option<(AuthCodeRecord, bool)>, StoreError> {
        let won = auth_code::Entity::update_many()
            .col_expr(auth_code::Column::UsedAt, Expr::value(now))
            .filter(auth_code::Column::CodeHash.eq(code_hash.to_vec()))
            .filter(auth_code::Column::ClientId.eq(client_id.to_owned()))
            .filter(auth_code::Column::UsedAt.is_null())
            .exec(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .rows_affected
            == 1;
        let found = auth_code::Entity::find_by_id(code_hash.to_vec())
            .one(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?;
        found.map(|m| Ok((code_from(m)?, won))).transpose()
    }

    async fn mark_code_replayed(
        &self,
        code_hash: &[u8; 32],
        now: Millis,
    ) -> Result<(), StoreError> {
        auth_code::Entity::update_many()
            .col_expr(auth_code::Column::ReplayedAt, Expr::value(now))
            .filter(auth_code::Column::CodeHash.eq(code_hash.to_vec()))
            .filter(auth_code::Column::ReplayedAt.is_null())
            .exec(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn code_replayed(&self, code_hash: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(auth_code::Entity::find_by_id(code_hash.to_vec())
            .one(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .is_some_and(|m| m.replayed_at.is_some()))
    }

    async fn insert_refresh(&self, token: &RefreshRecord) -> Result<(), StoreError> {
        refresh_token::Entity::insert(refresh_to(token))
            .exec(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn get_refresh(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<RefreshRecord>, StoreError> {
        refresh_token::Entity::find_by_id(token_hash.to_vec())
            .one(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .map(refresh_from)
            .transpose()
    }

    async fn rotate_refresh(
        &self,
        old: &[u8; 32],
        successor: &RefreshRecord,
    ) -> Result<bool, StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        let won = refresh_token::Entity::update_many()
            .col_expr(
                refresh_token::Column::RotatedAt,
                Expr::value(successor.created_at),
            )
            .filter(refresh_token::Column::TokenHash.eq(old.to_vec()))
            .filter(refresh_token::Column::RotatedAt.is_null())
            .filter(refresh_token::Column::RevokedAt.is_null())
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?
            .rows_affected
            == 1;
        if !won {
            return Ok(false);
        }
        refresh_token::Entity::insert(refresh_to(successor))
            .exec(&txn)
            .await
            .map_err(|e| self.fail(e))?;
        self.commit(txn).await?;
        Ok(true)
    }

    async fn revoke_family(&self, family_id: &str, now: Millis) -> Result<(), StoreError> {
        let filter =
            sea_orm::Condition::all().add(refresh_token::Column::FamilyId.eq(family_id.to_owned()));
        self.revoke_refresh_where(filter, now).await
    }

    async fn revoke_refresh(&self, token_hash: &[u8; 32], now: Millis) -> Result<(), StoreError> {
        let filter =
            sea_orm::Condition::all().add(refresh_token::Column::TokenHash.eq(token_hash.to_vec()));
        self.revoke_refresh_where(filter, now).await
    }

    async fn revoke_holder(&self, holder_id: &str, now: Millis) -> Result<(), StoreError> {
        let filter =
            sea_orm::Condition::all().add(refresh_token::Column::HolderId.eq(holder_id.to_owned()));
        self.revoke_refresh_where(filter, now).await
    }

    async fn revoke_jti(&self, jti: &str, expires_at: Millis) -> Result<(), StoreError> {
        let txn = self.conn()?.begin().await.map_err(|e| self.fail(e))?;
        revoked_token::Entity::insert(revoked_token::ActiveModel {
            jti: Set(jti.to_owned()),
            expires_at: Set(expires_at),
        })
        .on_conflict_do_nothing_on([revoked_token::Column::Jti])
        .exec(&txn)
        .await
        .map_err(|e| self.fail(e))?;
        self.notify(&txn, INVALIDATE_ALL).await?;
        self.commit(txn).await
    }

    async fn prune_tokens(&self, before: Millis) -> Result<u64, StoreError> {
        let codes = auth_code::Entity::delete_many()
            .filter(auth_code::Column::ExpiresAt.lt(before))
            .exec(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?;
        let refresh = refresh_token::Entity::delete_many()
            .filter(refresh_token::Column::ExpiresAt.lt(before))
            .filter(refresh_token::Column::AccessExpiresAt.lt(before))
            .exec(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?;
        let revoked = revoked_token::Entity::delete_many()
            .filter(revoked_token::Column::ExpiresAt.lt(before))
            .exec(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(codes.rows_affected + refresh.rows_affected + revoked.rows_affected)
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        Ok(revoked_token::Entity::find_by_id(jti.to_owned())
            .one(self.conn()?)
            .await
            .map_err(|e| self.fail(e))?
            .is_some())
    }
}
