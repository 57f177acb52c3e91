//! The principal an allow adds to the request (headers, and optionally
//! dynamic metadata), encoded once per key and kept per thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};

use super::ExtAuthzApi;
use super::respond::header;
use super::wire::EncodedPrincipal;
use crate::domain::cache::ThreadSlots;
use crate::domain::resolver::ResolvedKey;

/// A key's encoded principal, valid for exactly that resolved key: the entry
/// holds the `Arc` it was built from, so a match by pointer cannot be a newer
/// key (or account) that reuses the allocation.
struct PrincipalEntry {
    key: Arc<ResolvedKey>,
    principal: Arc<EncodedPrincipal>,
}

thread_local! {
    /// Per thread, like the resolver's copies of hot keys: a hit touches no
    /// memory that another core writes.
    static PRINCIPALS: RefCell<ThreadSlots<PrincipalEntry>> = RefCell::default();
}

pub(super) const PRINCIPAL_FIELDS: [&str; 5] = ["account-id", "key-id", "mode", "scopes", "plan"];
const METADATA_FIELDS: [&str; 5] = ["account_id", "key_id", "mode", "scopes", "plan"];

fn string_value(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    }
}

impl ExtAuthzApi {
    /// The principal headers and dynamic metadata for `key`, encoded.
    fn encode_principal(&self, key: &ResolvedKey) -> EncodedPrincipal {
        let values = [
            key.record.account_id.clone(),
            key.record.id.clone(),
            key.record.mode.tag().to_owned(),
            key.scope_strings.join(","),
            key.account.plan.clone(),
        ];
        let mut headers = Vec::with_capacity(values.len());
        let mut metadata = Struct {
            fields: HashMap::with_capacity(if self.settings.dynamic_metadata {
                values.len()
            } else {
                0
            }),
        };
        for ((name, field), value) in self.names.iter().zip(METADATA_FIELDS).zip(values) {
            if self.settings.dynamic_metadata {
                metadata
                    .fields
                    .insert(field.to_owned(), string_value(&value));
            }
            headers.push(header(name, value));
        }
        EncodedPrincipal::new(headers, (!metadata.fields.is_empty()).then_some(metadata))
    }

    /// `key`'s encoded principal, from this thread's cache when it was built
    /// for this very resolved key.
    pub(super) fn principal(&self, key: &Arc<ResolvedKey>) -> Arc<EncodedPrincipal> {
        let hash = &key.record.key_hash;
        let hit = PRINCIPALS.with_borrow(|cache| {
            cache
                .get(self.owner, hash)
                .filter(|e| Arc::ptr_eq(&e.key, key))
                .map(|e| e.principal.clone())
        });
        if let Some(hit) = hit {
            return hit;
        }
        let principal = Arc::new(self.encode_principal(key));
        PRINCIPALS.with_borrow_mut(|cache| {
            cache.insert(
                self.owner,
                *hash,
                PrincipalEntry {
                    key: key.clone(),
                    principal: principal.clone(),
                },
            );
        });
        principal
    }
}
