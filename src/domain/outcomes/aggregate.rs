//! Per-minute aggregates of recorded outcomes, built by the worker (never on
//! the hot path) and handed out in batches. Bounded: at most `max_groups`
//! distinct aggregates are held; an outcome that would need another one is
//! refused and counted as dropped by the caller.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::{Outcome, minute_of};
use crate::domain::model::{Millis, Mode};
use crate::domain::reason::Reason;
use crate::ports::{DenialEvent, GeoLookup, PublishedEvent, UsageRow};

/// Addresses whose country is remembered between lookups.
const GEO_CACHE: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct UsageGroup {
    minute: Millis,
    key_id: String,
    permission: String,
    outcome: Reason,
    country: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DenialGroup {
    minute: Millis,
    target_type: &'static str,
    target_id: Option<String>,
    reason: &'static str,
    client_ip: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FailureGroup {
    minute: Millis,
    key_id: String,
}

#[derive(Debug, Clone)]
struct Owner {
    account_id: String,
    mode: Mode,
}

#[derive(Debug, Default, Clone)]
struct FailureCount {
    account: Option<(String, Mode)>,
    reasons: BTreeMap<&'static str, i64>,
}

/// A key seen from a country during this batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub key_id: String,
    pub account_id: String,
    pub mode: Mode,
    pub country: String,
    pub at: Millis,
}

/// A round's usage counts as aggregated, handed out whole (a swap, not a
/// walk): [`UsageGroups::take_rows`] turns them into rows, off the runtime.
#[derive(Debug, Default)]
pub struct UsageGroups(HashMap<UsageGroup, (Owner, i64)>);

impl UsageGroups {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The rows, in the order of their conflict key (rows of one minute and
    /// nearby keys written together). The groups are left empty with their
    /// room, for [`Aggregator::recycle`].
    pub fn take_rows(&mut self) -> Vec<UsageRow> {
        let mut rows: Vec<UsageRow> = self
            .0
            .drain()
            .map(|(g, (owner, count))| UsageRow {
                minute: g.minute,
                key_id: g.key_id,
                account_id: owner.account_id,
                mode: owner.mode,
                permission: g.permission,
                outcome: g.outcome.code().to_owned(),
                country: g.country,
                count,
            })
            .collect();
        rows.sort_unstable_by(|a, b| {
            (a.minute, &a.key_id, &a.permission, &a.outcome, &a.country).cmp(&(
                b.minute,
                &b.key_id,
                &b.permission,
                &b.outcome,
                &b.country,
            ))
        });
        rows
    }
}

/// What a flush writes.
#[derive(Debug, Default)]
pub struct Closed {
    pub usage: UsageGroups,
    pub denials: Vec<DenialEvent>,
    /// `auth.failed` and `rate_limit.exceeded`, per key and closed minute;
    /// the worker throttles them.
    pub failures: Vec<PublishedEvent>,
    pub sightings: Vec<Sighting>,
}

impl Closed {
    pub fn is_empty(&self) -> bool {
        self.usage.is_empty()
            && self.denials.is_empty()
            && self.failures.is_empty()
            && self.sightings.is_empty()
    }
}

pub struct Aggregator {
    max_groups: usize,
    usage: HashMap<UsageGroup, (Owner, i64)>,
    /// The groups of a round already written, empty, kept for their room.
    spare: HashMap<UsageGroup, (Owner, i64)>,
    denials: HashMap<DenialGroup, (Option<Owner>, i64)>,
    failures: HashMap<FailureGroup, FailureCount>,
    /// `RATE_LIMITED` denials per key and minute: the owner and the count.
    limited: HashMap<FailureGroup, (Owner, i64)>,
    sightings: HashMap<(String, String), Sighting>,
    geo_cache: HashMap<IpAddr, Option<String>>,
}

impl Aggregator {
    pub fn new(max_groups: usize) -> Self {
        Self {
            max_groups: max_groups.max(1),
            usage: HashMap::new(),
            spare: HashMap::new(),
            denials: HashMap::new(),
            failures: HashMap::new(),
            limited: HashMap::new(),
            sightings: HashMap::new(),
            geo_cache: HashMap::new(),
        }
    }

    /// Aggregates held now.
    pub fn groups(&self) -> usize {
        self.usage.len()
            + self.denials.len()
            + self.failures.len()
            + self.limited.len()
            + self.sightings.len()
    }

    /// Gives back the groups a round was handed out in, emptied.
    pub fn recycle(&mut self, groups: UsageGroups) {
        if groups.0.is_empty() && groups.0.capacity() > self.spare.capacity() {
            self.spare = groups.0;
        }
    }

    fn country(&mut self, geo: Option<&dyn GeoLookup>, ip: Option<IpAddr>) -> String {
        let (Some(geo), Some(ip)) = (geo, ip) else {
            return String::new();
        };
        if let Some(hit) = self.geo_cache.get(&ip) {
            return hit.clone().unwrap_or_default();
        }
        if self.geo_cache.len() >= GEO_CACHE {
            self.geo_cache.clear();
        }
        let found = geo.country(ip);
        self.geo_cache.insert(ip, found.clone());
        found.unwrap_or_default()
    }

    /// Adds one outcome; `false` when there is no room for it (it is dropped).
    pub fn add(&mut self, o: &Outcome, geo: Option<&dyn GeoLookup>) -> bool {
        // Up to four new aggregates; refuse whole rather than half-count.
        if self.groups() + 4 > self.max_groups {
            return false;
        }
        self.add_unchecked(o, geo);
        true
    }

    fn add_unchecked(&mut self, o: &Outcome, geo: Option<&dyn GeoLookup>) {
        let minute = minute_of(o.at);
        let country = self.country(geo, o.client_ip);
        if let Some(key) = &o.key {
            let owner = Owner {
                account_id: key.record.account_id.clone(),
                mode: key.record.mode,
            };
            let group = UsageGroup {
                minute,
                key_id: key.record.id.clone(),
                permission: o.permission.as_str().to_owned(),
                outcome: o.reason,
                country: country.clone(),
            };
            self.usage.entry(group).or_insert((owner, 0)).1 += 1;
            if !country.is_empty() {
                let s = self
                    .sightings
                    .entry((key.record.id.clone(), country.clone()))
                    .or_insert_with(|| Sighting {
                        key_id: key.record.id.clone(),
                        account_id: key.record.account_id.clone(),
                        mode: key.record.mode,
                        country,
                        at: o.at,
                    });
                s.at = s.at.max(o.at);
            }
            if o.reason.is_authentication_failure() {
                let f = self
                    .failures
                    .entry(FailureGroup {
                        minute,
                        key_id: key.record.id.clone(),
                    })
                    .or_default();
                f.account = Some((key.record.account_id.clone(), key.record.mode));
                *f.reasons.entry(o.reason.code()).or_insert(0) += 1;
            }
            if o.reason == Reason::RateLimited {
                let group = FailureGroup {
                    minute,
                    key_id: key.record.id.clone(),
                };
                let owner = Owner {
                    account_id: key.record.account_id.clone(),
                    mode: key.record.mode,
                };
                self.limited.entry(group).or_insert((owner, 0)).1 += 1;
            }
        }
        if o.reason != Reason::Allowed {
            let owner = o.key.as_ref().map(|k| Owner {
                account_id: k.record.account_id.clone(),
                mode: k.record.mode,
            });
            self.denials
                .entry(denial_group(o, minute))
                .or_insert((owner, 0))
                .1 += 1;
        }
    }

    /// Takes every usage count and sighting, and the denials and failures of
    /// minutes before `now`'s (all of them when `everything`: at shutdown).
    pub fn take(&mut self, now: Millis, everything: bool) -> Closed {
        let current = minute_of(now);
        let open = |minute: Millis| !everything && minute >= current;
        let mut closed = Closed::default();
        // The next round fills the room of an earlier one: a table of
        // 100,000 groups allocated afresh every round is new memory for the
        // kernel to clear (in 2 MiB huge pages, milliseconds a page).
        let spare = std::mem::take(&mut self.spare);
        closed.usage = UsageGroups(std::mem::replace(&mut self.usage, spare));
        closed.sightings = self.sightings.drain().map(|(_, s)| s).collect();
        let (keep, done): (HashMap<_, _>, HashMap<_, _>) =
            self.denials.drain().partition(|(g, _)| open(g.minute));
        self.denials = keep;
        closed.denials = done
            .into_iter()
            .map(|(g, (owner, count))| DenialEvent {
                minute: g.minute,
                account_id: owner.as_ref().map(|o| o.account_id.clone()),
                mode: owner.map(|o| o.mode),
                target_type: g.target_type,
                target_id: g.target_id,
                reason: g.reason,
                client_ip: g.client_ip,
                count,
            })
            .collect();
        closed
            .denials
            .sort_by(|a, b| (a.minute, &a.target_id).cmp(&(b.minute, &b.target_id)));
        let (keep, done): (HashMap<_, _>, HashMap<_, _>) =
            self.failures.drain().partition(|(g, _)| open(g.minute));
        self.failures = keep;
        closed.failures = done.into_iter().map(|(g, f)| auth_failed(g, f)).collect();
        let (keep, done): (HashMap<_, _>, HashMap<_, _>) =
            self.limited.drain().partition(|(g, _)| open(g.minute));
        self.limited = keep;
        closed.failures.extend(
            done.into_iter()
                .map(|(g, (owner, count))| rate_limit_exceeded(g, owner, count)),
        );
        closed
    }
}

fn denial_group(o: &Outcome, minute: Millis) -> DenialGroup {
    let (target_type, target_id) = match (&o.key, o.credential_prefix) {
        (Some(k), _) => ("key", Some(k.record.id.clone())),
        (None, Some(p)) => ("credential", Some(crate::crypto::hex(&p))),
        (None, None) => ("none", None),
    };
    DenialGroup {
        minute,
        target_type,
        target_id,
        reason: o.reason.code(),
        client_ip: o.client_ip,
    }
}

fn auth_failed(g: FailureGroup, f: FailureCount) -> PublishedEvent {
    let count: i64 = f.reasons.values().sum();
    let (account_id, mode) = match f.account {
        Some((a, m)) => (Some(a), Some(m)),
        None => (None, None),
    };
    PublishedEvent {
        event_type: "auth.failed",
        time: g.minute,
        account_id,
        mode,
        target_type: "key",
        target_id: Some(g.key_id.clone()),
        data: serde_json::json!({
            "key_id": g.key_id,
            "minute": super::worker::rfc3339(g.minute),
            "count": count,
            "reasons": f.reasons,
        }),
    }
}

fn rate_limit_exceeded(g: FailureGroup, owner: Owner, count: i64) -> PublishedEvent {
    PublishedEvent {
        event_type: "rate_limit.exceeded",
        time: g.minute,
        account_id: Some(owner.account_id),
        mode: Some(owner.mode),
        target_type: "key",
        target_id: Some(g.key_id.clone()),
        data: serde_json::json!({
            "key_id": g.key_id,
            "minute": super::worker::rfc3339(g.minute),
            "count": count,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(minute: Millis, key_id: &str) -> UsageGroup {
        UsageGroup {
            minute,
            key_id: key_id.to_owned(),
            permission: "feedback.read".to_owned(),
            outcome: Reason::Allowed,
            country: String::new(),
        }
    }

    fn owner() -> Owner {
        Owner {
            account_id: "acc".to_owned(),
            mode: Mode::Test,
        }
    }

    /// A round's usage is handed out whole and made into rows in conflict
    /// key order; the emptied groups, given back, are the next round's room
    /// (no table allocated afresh every round).
    #[test]
    fn a_round_is_handed_out_in_order_and_its_room_is_reused() {
        let mut agg = Aggregator::new(10_000);
        for (minute, key) in [(60_000, "key_b"), (0, "key_c"), (0, "key_a")] {
            agg.usage.insert(group(minute, key), (owner(), 2));
        }
        let mut closed = agg.take(120_000, false);
        assert!(agg.usage.is_empty());
        let rows = closed.usage.take_rows();
        let order: Vec<(Millis, &str)> =
            rows.iter().map(|r| (r.minute, r.key_id.as_str())).collect();
        assert_eq!(order, [(0, "key_a"), (0, "key_c"), (60_000, "key_b")]);
        assert!(
            rows.iter()
                .all(|r| r.count == 2 && r.account_id == "acc" && r.outcome == "ALLOWED")
        );
        let room = closed.usage.0.capacity();
        assert!(room >= 3);
        agg.recycle(closed.usage);
        agg.usage.insert(group(120_000, "key_d"), (owner(), 1));
        let next = agg.take(180_000, false);
        assert_eq!(next.usage.len(), 1);
        assert!(
            agg.usage.capacity() >= room,
            "the round after takes the recycled room"
        );
    }
}
