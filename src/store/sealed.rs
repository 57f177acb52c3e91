//! `SealedStore` for `SqlStore`: every column that holds a value sealed under
//! the master key, walked in one fixed order (table by table, primary key
//! order within each) and rewritten by compare-and-swap, so a rotation that
//! runs beside the service never overwrites a value the service just wrote.

use async_trait::async_trait;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entities::{
    integration, meta, reveal, signing_key, signing_secret_version, webhook_secret,
};
use super::map::parse_hash;
use super::{SqlStore, map_err};
use crate::crypto::hex;
use crate::ports::{SealedSlot, SealedStore, SealedValue, StoreError};

/// The order tables are walked in; a slot's position is its table's index.
fn table_index(slot: &SealedSlot) -> usize {
    match slot {
        SealedSlot::Meta { .. } => 0,
        SealedSlot::SigningKey { .. } => 1,
        SealedSlot::SigningSecretVersion { .. } => 2,
        SealedSlot::Reveal { .. } => 3,
        SealedSlot::Integration { .. } => 4,
        SealedSlot::WebhookSecret { .. } => 5,
    }
}
const TABLES: usize = 6;

/// Rows after `(id, version)` in `(id, version)` order: the keyset condition
/// of the tables whose primary key is an id and a version.
fn after_version<I, V>(id_col: I, id: &str, version_col: V, version: i64) -> Condition
where
    I: ColumnTrait,
    V: ColumnTrait,
{
    Condition::any().add(id_col.gt(id)).add(
        Condition::all()
            .add(id_col.eq(id))
            .add(version_col.gt(version)),
    )
}

impl SqlStore {
    /// Up to `limit` values of table `index`, after `after` when it is a slot
    /// of that table.
    async fn sealed_page(
        &self,
        index: usize,
        after: Option<&SealedSlot>,
        limit: u64,
    ) -> Result<Vec<SealedValue>, StoreError> {
        let db = &self.db;
        Ok(match index {
            0 => {
                let mut q = meta::Entity::find();
                if let Some(SealedSlot::Meta { name }) = after {
                    q = q.filter(meta::Column::Name.gt(name.clone()));
                }
                q.order_by_asc(meta::Column::Name)
                    .limit(limit)
                    .all(db)
                    .await
                    .map_err(map_err)?
                    .into_iter()
                    .map(|m| SealedValue {
                        slot: SealedSlot::Meta { name: m.name },
                        sealed: m.value,
                    })
                    .collect()
            }
            1 => {
                let mut q = signing_key::Entity::find();
                if let Some(SealedSlot::SigningKey { kid }) = after {
                    q = q.filter(signing_key::Column::Kid.gt(kid.clone()));
                }
                q.order_by_asc(signing_key::Column::Kid)
                    .limit(limit)
                    .all(db)
                    .await
                    .map_err(map_err)?
                    .into_iter()
                    .map(|m| SealedValue {
                        slot: SealedSlot::SigningKey { kid: m.kid },
                        sealed: m.private_sealed,
                    })
                    .collect()
            }
            2 => {
                use signing_secret_version::Column as C;
                let mut q = signing_secret_version::Entity::find();
                if let Some(SealedSlot::SigningSecretVersion { secret_id, version }) = after {
                    q = q.filter(after_version(C::SecretId, secret_id, C::Version, *version));
                }
                q.order_by_asc(C::SecretId)
                    .order_by_asc(C::Version)
                    .limit(limit)
                    .all(db)
                    .await
                    .map_err(map_err)?
                    .into_iter()
                    .map(|m| SealedValue {
                        slot: SealedSlot::SigningSecretVersion {
                            secret_id: m.secret_id,
                            version: m.version,
                        },
                        sealed: m.sealed,
                    })
                    .collect()
            }
            3 => {
                let mut q = reveal::Entity::find();
                if let Some(SealedSlot::Reveal { token_hash }) = after {
                    q = q.filter(reveal::Column::TokenHash.gt(hex(token_hash)));
                }
                q.order_by_asc(reveal::Column::TokenHash)
                    .limit(limit)
                    .all(db)
                    .await
                    .map_err(map_err)?
                    .into_iter()
                    .map(|m| {
                        Ok(SealedValue {
                            slot: SealedSlot::Reveal {
                                token_hash: parse_hash("reveal", &m.subject_id, &m.token_hash)?,
                            },
                            sealed: m.sealed,
                        })
                    })
                    .collect::<Result<_, StoreError>>()?
            }
            4 => {
                let mut q = integration::Entity::find();
                if let Some(SealedSlot::Integration { id }) = after {
                    q = q.filter(integration::Column::Id.gt(id.clone()));
                }
                q.order_by_asc(integration::Column::Id)
                    .limit(limit)
                    .all(db)
                    .await
                    .map_err(map_err)?
                    .into_iter()
                    .map(|m| SealedValue {
                        slot: SealedSlot::Integration { id: m.id },
                        sealed: m.sealed_credentials,
                    })
                    .collect()
            }
            5 => {
                use webhook_secret::Column as C;
                let mut q = webhook_secret::Entity::find();
                if let Some(SealedSlot::WebhookSecret {
                    endpoint_id,
                    version,
                }) = after
                {
                    q = q.filter(after_version(
                        C::EndpointId,
                        endpoint_id,
                        C::Version,
                        *version,
                    ));
                }
                q.order_by_asc(C::EndpointId)
                    .order_by_asc(C::Version)
                    .limit(limit)
                    .all(db)
                    .await
                    .map_err(map_err)?
                    .into_iter()
                    .map(|m| SealedValue {
                        slot: SealedSlot::WebhookSecret {
                            endpoint_id: m.endpoint_id,
                            version: m.version,
                        },
                        sealed: m.sealed,
                    })
                    .collect()
            }
            _ => Vec::new(),
        })
    }
}

#[async_trait]
impl SealedStore for SqlStore {
    async fn sealed_values(
        &self,
        after: Option<&SealedSlot>,
        limit: u64,
    ) -> Result<Vec<SealedValue>, StoreError> {
        let mut out = Vec::new();
        let mut index = after.map_or(0, table_index);
        let mut cursor = after;
        while index < TABLES && (out.len() as u64) < limit {
            let page = self
                .sealed_page(index, cursor, limit - out.len() as u64)
                .await?;
            out.extend(page);
            index += 1;
            cursor = None;
        }
        Ok(out)
    }

    async fn replace_sealed(
        &self,
        slot: &SealedSlot,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let db = &self.db;
        let (old, new) = (old.to_vec(), new.to_vec());
        let result = match slot {
            SealedSlot::Meta { name } => {
                meta::Entity::update_many()
                    .col_expr(meta::Column::Value, Expr::value(new))
                    .filter(meta::Column::Name.eq(name.clone()))
                    .filter(meta::Column::Value.eq(old))
                    .exec(db)
                    .await
            }
            SealedSlot::SigningKey { kid } => {
                signing_key::Entity::update_many()
                    .col_expr(signing_key::Column::PrivateSealed, Expr::value(new))
                    .filter(signing_key::Column::Kid.eq(kid.clone()))
                    .filter(signing_key::Column::PrivateSealed.eq(old))
                    .exec(db)
                    .await
            }
            SealedSlot::SigningSecretVersion { secret_id, version } => {
                use signing_secret_version::Column as C;
                signing_secret_version::Entity::update_many()
                    .col_expr(C::Sealed, Expr::value(new))
                    .filter(C::SecretId.eq(secret_id.clone()))
                    .filter(C::Version.eq(*version))
                    .filter(C::Sealed.eq(old))
                    .exec(db)
                    .await
            }
            SealedSlot::Reveal { token_hash } => {
                reveal::Entity::update_many()
                    .col_expr(reveal::Column::Sealed, Expr::value(new))
                    .filter(reveal::Column::TokenHash.eq(hex(token_hash)))
                    .filter(reveal::Column::Sealed.eq(old))
                    .exec(db)
                    .await
            }
            SealedSlot::Integration { id } => {
                integration::Entity::update_many()
                    .col_expr(integration::Column::SealedCredentials, Expr::value(new))
                    .filter(integration::Column::Id.eq(id.clone()))
                    .filter(integration::Column::SealedCredentials.eq(old))
                    .exec(db)
                    .await
            }
            SealedSlot::WebhookSecret {
                endpoint_id,
                version,
            } => {
                use webhook_secret::Column as C;
                webhook_secret::Entity::update_many()
                    .col_expr(C::Sealed, Expr::value(new))
                    .filter(C::EndpointId.eq(endpoint_id.clone()))
                    .filter(C::Version.eq(*version))
                    .filter(C::Sealed.eq(old))
                    .exec(db)
                    .await
            }
        };
        Ok(result.map_err(map_err)?.rows_affected == 1)
    }
}
