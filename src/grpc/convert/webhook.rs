//! `WebhookService` ⇄ domain: ids, formats and statuses checked (each error
//! names its field), records out. URLs, event types and descriptions are
//! checked by the domain, which also re-checks a URL at every delivery.

use super::{account_id, timestamp};
use crate::domain::error::{Error, Result};
use crate::domain::model::{
    DeliveryRecord, DeliveryStatus, EndpointRecord, EndpointSecretRecord, SignatureFormat,
    WEBHOOK_DELIVERY_ID_PREFIX, WEBHOOK_ENDPOINT_ID_PREFIX, valid_id,
};
use crate::domain::webhooks::{DEFAULT_OVERLAP_SECS, EndpointChange, NewEndpoint};
use crate::pb;

pub fn endpoint_id(field: &'static str, id: &str) -> Result<String> {
    if id.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if !valid_id(id, WEBHOOK_ENDPOINT_ID_PREFIX) {
        return Err(Error::invalid(
            field,
            "is not a webhook endpoint id (whe_…)",
        ));
    }
    Ok(id.to_owned())
}

pub fn delivery_id(field: &'static str, id: &str) -> Result<String> {
    if id.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if !valid_id(id, WEBHOOK_DELIVERY_ID_PREFIX) {
        return Err(Error::invalid(
            field,
            "is not a webhook delivery id (dlv_…)",
        ));
    }
    Ok(id.to_owned())
}

/// Empty = none (operator-wide, or no filter).
pub fn optional_account(field: &'static str, id: &str) -> Result<Option<String>> {
    if id.is_empty() {
        Ok(None)
    } else {
        account_id(field, id).map(Some)
    }
}

fn format_in(value: i32) -> Result<SignatureFormat> {
    match pb::SignatureFormat::try_from(value) {
        Ok(pb::SignatureFormat::Unspecified | pb::SignatureFormat::Standard) => {
            Ok(SignatureFormat::Standard)
        }
        Ok(pb::SignatureFormat::Seed) => Ok(SignatureFormat::Seed),
        Err(_) => Err(Error::invalid(
            "signature_format",
            format!("{value} is not a signature format"),
        )),
    }
}

fn format_out(f: SignatureFormat) -> pb::SignatureFormat {
    match f {
        SignatureFormat::Standard => pb::SignatureFormat::Standard,
        SignatureFormat::Seed => pb::SignatureFormat::Seed,
    }
}

/// `None` = any status.
pub fn delivery_status_in(value: i32) -> Result<Option<DeliveryStatus>> {
    match pb::DeliveryStatus::try_from(value) {
        Ok(pb::DeliveryStatus::Unspecified) => Ok(None),
        Ok(pb::DeliveryStatus::Pending) => Ok(Some(DeliveryStatus::Pending)),
        Ok(pb::DeliveryStatus::Succeeded) => Ok(Some(DeliveryStatus::Succeeded)),
        Ok(pb::DeliveryStatus::Failed) => Ok(Some(DeliveryStatus::Failed)),
        Err(_) => Err(Error::invalid(
            "status",
            format!("{value} is not a delivery status"),
        )),
    }
}

fn delivery_status_out(s: DeliveryStatus) -> pb::DeliveryStatus {
    match s {
        DeliveryStatus::Pending => pb::DeliveryStatus::Pending,
        DeliveryStatus::Succeeded => pb::DeliveryStatus::Succeeded,
        DeliveryStatus::Failed => pb::DeliveryStatus::Failed,
    }
}

pub fn new_endpoint(r: pb::CreateEndpointRequest) -> Result<NewEndpoint> {
    Ok(NewEndpoint {
        account_id: optional_account("account_id", &r.account_id)?,
        format: format_in(r.signature_format)?,
        url: r.url,
        event_types: r.event_types,
        description: r.description,
    })
}

pub fn endpoint_change(r: pb::UpdateEndpointRequest) -> Result<(String, EndpointChange)> {
    let id = endpoint_id("id", &r.id)?;
    Ok((
        id,
        EndpointChange {
            url: r.url,
            event_types: r.event_types.map(|l| l.values),
            description: r.description,
            enabled: r.enabled,
        },
    ))
}

/// Seconds, defaulted; the domain checks the range.
pub fn overlap(value: Option<i64>) -> i64 {
    value.unwrap_or(DEFAULT_OVERLAP_SECS)
}

pub fn endpoint_out(e: &EndpointRecord, secrets: &[EndpointSecretRecord]) -> pb::WebhookEndpoint {
    pb::WebhookEndpoint {
        id: e.id.clone(),
        account_id: e.account_id.clone().unwrap_or_default(),
        url: e.url.clone(),
        event_types: e.event_types.clone(),
        description: e.description.clone(),
        signature_format: format_out(e.format).into(),
        enabled: e.enabled,
        disabled_reason: e.disabled_reason.clone().unwrap_or_default(),
        failing_since: e.failing_since.map(timestamp),
        created_at: Some(timestamp(e.created_at)),
        updated_at: Some(timestamp(e.updated_at)),
        version: e.version,
        secret_versions: secrets
            .iter()
            .map(|s| pb::EndpointSecretVersion {
                version: s.version,
                created_at: Some(timestamp(s.created_at)),
                expires_at: s.expires_at.map(timestamp),
            })
            .collect(),
    }
}

pub fn delivery_out(d: &DeliveryRecord) -> pb::WebhookDelivery {
    pb::WebhookDelivery {
        id: d.id.clone(),
        event_id: d.event_id.clone(),
        event_type: d.event_type.clone(),
        endpoint_id: d.endpoint_id.clone(),
        status: delivery_status_out(d.status).into(),
        attempts: d.attempts,
        next_attempt_at: (d.status == DeliveryStatus::Pending)
            .then(|| timestamp(d.next_attempt_at)),
        last_http_status: d.last_status.unwrap_or(0),
        last_error: d.last_error.clone().unwrap_or_default(),
        response_body: d.response_excerpt.clone().unwrap_or_default(),
        created_at: Some(timestamp(d.created_at)),
        updated_at: Some(timestamp(d.updated_at)),
    }
}
