//! The outcome worker: drains the ring into aggregates and writes them in
//! batches (usage rows every round; denials and `auth.failed` once their
//! minute has closed, or at shutdown), looks up countries and sends
//! `auth.unusual_location`. Runs beside the servers, never in a decision.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::OutcomeRecorder;
use super::aggregate::{Aggregator, Sighting, UsageGroups};
use crate::domain::model::Millis;
use crate::domain::pace::Pace;
use crate::ports::{
    Clock, DenialEvent, GeoLookup, OutcomeEvents, PublishedEvent, UsageRow, UsageStore,
};
use crate::telemetry::metrics::metrics;

const DAY_MS: Millis = 86_400_000;
/// Usage rows per transaction: a few milliseconds of the database's time
/// (~11 µs a new row on PostgreSQL, most of it index and WAL writes).
const USAGE_SLICE: usize = 250;
/// Outcomes moved into the aggregates between two yields to the runtime.
const DRAIN_CHUNK: usize = 512;
/// Throttle entries kept before stale ones are swept.
const MAX_THROTTLED_KEYS: usize = 10_000;

/// An RFC 3339 UTC time, to the second.
pub fn rfc3339(at: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub struct WorkerDeps {
    pub recorder: Arc<OutcomeRecorder>,
    pub usage: Arc<dyn UsageStore>,
    pub events: Arc<dyn OutcomeEvents>,
    pub geo: Option<Arc<dyn GeoLookup>>,
    pub clock: Arc<dyn Clock>,
    pub max_groups: usize,
    /// A country not seen from in this many days is unusual.
    pub location_window_days: i64,
    /// One `auth.failed` (and one `rate_limit.exceeded`) per key per this
    /// long; the rest are counted into the next.
    pub auth_failed_every_ms: Millis,
    /// How long a round's usage slices are spread over: most of the time
    /// until the next round ([`crate::domain::pace::spread_over`]).
    pub usage_spread: Duration,
    /// Turns true when the server drains: a paced round then writes the
    /// rest of its slices back to back, so that shutdown does not wait out
    /// the spread. `None`: never.
    pub drain: Option<watch::Receiver<bool>>,
}

pub struct OutcomeWorker {
    deps: WorkerDeps,
    agg: Aggregator,
    /// Written in an earlier round that failed: retried first.
    pending_usage: Vec<UsageRow>,
    pending_denials: Vec<DenialEvent>,
    /// Per event type and key: when its last `auth.failed` or
    /// `rate_limit.exceeded` went out, and the count since.
    throttle: HashMap<(&'static str, String), (Millis, i64)>,
    /// (key, country, day) already handled.
    located: HashSet<(String, String, i64)>,
}

impl OutcomeWorker {
    pub fn new(deps: WorkerDeps) -> Self {
        let agg = Aggregator::new(deps.max_groups);
        Self {
            deps,
            agg,
            pending_usage: Vec::new(),
            pending_denials: Vec::new(),
            throttle: HashMap::new(),
            located: HashSet::new(),
        }
    }

    /// Moves what the ring holds into the aggregates, giving the runtime
    /// worker back every [`DRAIN_CHUNK`] outcomes: at 20,000 Checks a second
    /// one drain moves ~10,000 of them, milliseconds of one of the
    /// runtime's workers, and the calls that worker held waited meanwhile.
    pub async fn drain(&mut self) {
        let mut moved = 0;
        while let Some(o) = self.deps.recorder.pop() {
            if !self.agg.add(&o, self.deps.geo.as_deref()) {
                self.deps.recorder.count_drop();
            }
            moved += 1;
            if moved % DRAIN_CHUNK == 0 {
                tokio::task::yield_now().await;
            }
        }
        metrics().set_audit_buffer_depth(
            i64::try_from(self.deps.recorder.depth() + self.agg.groups()).unwrap_or(i64::MAX),
        );
    }

    /// One round; `everything` (at shutdown) also writes the open minute.
    pub async fn flush(&mut self, everything: bool) {
        self.drain().await;
        let now = self.deps.clock.now();
        let closed = self.agg.take(now, everything);
        let usage = self.rows(closed.usage).await;
        self.write_usage(usage, !everything).await;
        self.drain().await;
        self.write_denials(closed.denials).await;
        self.drain().await;
        self.send_failures(closed.failures, now).await;
        self.drain().await;
        self.locate(closed.sightings, now).await;
        let dropped = self.deps.recorder.take_dropped();
        if dropped > 0 {
            tracing::warn!(dropped, "outcome buffer full: outcomes dropped");
            let n = i64::try_from(dropped).unwrap_or(i64::MAX);
            if let Err(e) = self.deps.events.record_dropped(now, n).await {
                tracing::warn!(error = %e, dropped, "could not note the dropped outcomes");
            }
        }
    }

    /// The round's usage rows, made and ordered on a blocking thread: on a
    /// runtime worker, a sort of up to 100,000 rows would stall the calls
    /// that worker holds (the last-used flush's sort of as many keys took
    /// ~40 ms there, `domain::usage`). Only a runtime shutting down
    /// (or a panic) loses them, counted as dropped.
    async fn rows(&mut self, mut groups: UsageGroups) -> Vec<UsageRow> {
        let n = groups.len();
        if n == 0 {
            return Vec::new();
        }
        let made = tokio::task::spawn_blocking(move || {
            let rows = groups.take_rows();
            (rows, groups)
        });
        match made.await {
            Ok((rows, groups)) => {
                self.agg.recycle(groups);
                rows
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = n, "making the usage rows failed; dropped");
                for _ in 0..n {
                    self.deps.recorder.count_drop();
                }
                Vec::new()
            }
        }
    }

    /// Writes a round's rows a slice at a time, each slice in its
    /// own transaction; `paced` spreads the slices evenly over
    /// `usage_spread` (slice `i` of `n` starts no sooner than `i/n` of it
    /// after the first). A round holds up to `max_groups` rows, ~11 ms of
    /// the database's time per 1,000: written in one go they held the
    /// database and a core for seconds; written back to back in slices of
    /// 1,000 they still took a core in bursts of ~1.5 s every round, and
    /// cold lookups at 32 in flight felt each burst (p99 5.4–6.2 ms against
    /// 4.2–4.5 ms with no outcomes recorded, `bench/scale.sh`). Spread, the
    /// same work is a steady fraction of a core. A slice that fails is
    /// kept, with the rest, for the next round (the slices before it are
    /// written: nothing twice). The ring is emptied between slices: a
    /// paced round lasts seconds, and the worker is the ring's only
    /// reader, so at 12,000 Checks a second a 32,768-slot ring overflowed
    /// meanwhile.
    async fn write_usage(&mut self, mut rows: Vec<UsageRow>, paced: bool) {
        rows.append(&mut self.pending_usage);
        let slices = rows.len().div_ceil(USAGE_SLICE);
        let spread = if paced {
            self.deps.usage_spread
        } else {
            Duration::ZERO
        };
        let mut pace = Pace::new(spread, slices, self.deps.drain.clone());
        for i in 0..slices {
            if i > 0 {
                pace.until_due(i).await;
                self.drain().await;
            }
            let written = i * USAGE_SLICE;
            let slice = &rows[written..rows.len().min(written + USAGE_SLICE)];
            if let Err(e) = self.deps.usage.add_usage(slice).await {
                tracing::warn!(error = %e, rows = rows.len() - written, "could not write usage; will retry");
                rows.drain(..written);
                self.keep_bounded(rows);
                return;
            }
        }
        // Freeing a round's rows (four strings each) is milliseconds too.
        if rows.len() > USAGE_SLICE {
            drop(tokio::task::spawn_blocking(move || drop(rows)));
        }
    }

    async fn write_denials(&mut self, mut events: Vec<DenialEvent>) {
        events.append(&mut self.pending_denials);
        if events.is_empty() {
            return;
        }
        if let Err(e) = self.deps.events.record_denials(&events).await {
            tracing::warn!(error = %e, events = events.len(), "could not record denials; will retry");
            self.keep_denials_bounded(events);
        }
    }

    /// Keeps what a failed write could not store for the next round, at most
    /// `max_groups` of it (the rest counted as dropped).
    fn keep_bounded(&mut self, mut rows: Vec<UsageRow>) {
        let room = self.deps.max_groups;
        if rows.len() > room {
            for _ in room..rows.len() {
                self.deps.recorder.count_drop();
            }
            rows.truncate(room);
        }
        self.pending_usage = rows;
    }

    fn keep_denials_bounded(&mut self, mut events: Vec<DenialEvent>) {
        let room = self.deps.max_groups;
        if events.len() > room {
            for _ in room..events.len() {
                self.deps.recorder.count_drop();
            }
            events.truncate(room);
        }
        self.pending_denials = events;
    }

    /// `auth.failed` and `rate_limit.exceeded`, at most one of each per key
    /// per throttle window; what a window holds back is counted into the
    /// next one sent (`suppressed_before`).
    async fn send_failures(&mut self, failures: Vec<PublishedEvent>, now: Millis) {
        let every = self.deps.auth_failed_every_ms;
        if self.throttle.len() > MAX_THROTTLED_KEYS {
            self.throttle.retain(|_, (at, _)| now - *at < every);
        }
        let mut out = Vec::new();
        for mut event in failures {
            let Some(key) = event.target_id.clone() else {
                continue;
            };
            let count = event.data["count"].as_i64().unwrap_or(0);
            let entry = self
                .throttle
                .entry((event.event_type, key))
                .or_insert((i64::MIN, 0));
            if entry.0 != i64::MIN && now - entry.0 < every {
                entry.1 += count;
                continue;
            }
            event.data["suppressed_before"] = serde_json::json!(entry.1);
            *entry = (now, 0);
            out.push(event);
        }
        if out.is_empty() {
            return;
        }
        if let Err(e) = self.deps.events.publish(&out).await {
            tracing::warn!(error = %e, events = out.len(), "could not queue auth.failed / rate_limit.exceeded events");
        }
    }

    /// Notes where keys were seen from; a country the key has not been seen
    /// from in the window (when it has been seen before) is unusual, once
    /// per key, country and day.
    async fn locate(&mut self, sightings: Vec<Sighting>, now: Millis) {
        let day = now.div_euclid(DAY_MS);
        if self.located.len() > 100_000 {
            self.located.retain(|(_, _, d)| *d == day);
        }
        let window = self.deps.location_window_days * DAY_MS;
        let mut events = Vec::new();
        for s in sightings {
            // Two queries a sighting: keep the ring emptied meanwhile.
            self.drain().await;
            let marker = (s.key_id.clone(), s.country.clone(), day);
            if self.located.contains(&marker) {
                continue;
            }
            let known = match self.deps.usage.key_countries(&s.key_id).await {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read a key's countries");
                    continue;
                }
            };
            let recent = known
                .iter()
                .any(|k| k.country == s.country && k.last_seen >= now - window);
            let unusual = !known.is_empty() && !recent;
            let claim = unusual.then_some(day);
            match self
                .deps
                .usage
                .note_country(&s.key_id, &s.country, s.at, claim)
                .await
            {
                Ok(claimed) => {
                    self.located.insert(marker);
                    if unusual && claimed {
                        events.push(unusual_location(&s, &known, window, now));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not note a key's country"),
            }
        }
        if !events.is_empty()
            && let Err(e) = self.deps.events.publish(&events).await
        {
            tracing::warn!(error = %e, "could not queue auth.unusual_location events");
        }
    }
}

fn unusual_location(
    s: &Sighting,
    known: &[crate::ports::CountrySighting],
    window: Millis,
    now: Millis,
) -> PublishedEvent {
    let mut usual: Vec<&str> = known
        .iter()
        .filter(|k| k.last_seen >= now - window)
        .map(|k| k.country.as_str())
        .collect();
    usual.sort_unstable();
    PublishedEvent {
        event_type: "auth.unusual_location",
        time: s.at,
        account_id: Some(s.account_id.clone()),
        mode: Some(s.mode),
        target_type: "key",
        target_id: Some(s.key_id.clone()),
        data: serde_json::json!({
            "key_id": s.key_id,
            "country": s.country,
            "usual_countries": usual,
            "seen_at": rfc3339(s.at),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::domain::model::Mode;
    use crate::domain::reason::Reason;
    use crate::ports::{CountrySighting, StoreError, SystemClock, UsageQuery};

    /// Keeps what it is given; its `fail_call`-th write fails. With `busy`,
    /// each write lasts while Checks record `per_write` outcomes meanwhile.
    #[derive(Default)]
    struct Usage {
        calls: Mutex<Vec<usize>>,
        stored: Mutex<Vec<UsageRow>>,
        fail_call: AtomicUsize,
        busy: Option<(Arc<OutcomeRecorder>, usize)>,
        /// When each write started, if asked.
        started: Mutex<Option<Vec<std::time::Instant>>>,
    }

    #[async_trait]
    impl UsageStore for Usage {
        async fn add_usage(&self, rows: &[UsageRow]) -> Result<(), StoreError> {
            if let Some(started) = self.started.lock().unwrap().as_mut() {
                started.push(std::time::Instant::now());
            }
            if let Some((recorder, per_write)) = &self.busy {
                record_denials(recorder, *per_write);
            }
            let mut calls = self.calls.lock().unwrap();
            calls.push(rows.len());
            if calls.len() == self.fail_call.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("down".into()));
            }
            self.stored.lock().unwrap().extend_from_slice(rows);
            Ok(())
        }
        async fn usage_series(&self, _: &UsageQuery, _: u64) -> Result<Vec<UsageRow>, StoreError> {
            Ok(Vec::new())
        }
        async fn purge_usage(&self, _: Millis, _: u64) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn exercised(&self, _: &str) -> Result<Vec<(String, Millis)>, StoreError> {
            Ok(Vec::new())
        }
        async fn permissions_seen(&self, _: Millis) -> Result<Vec<String>, StoreError> {
            Ok(Vec::new())
        }
        async fn key_countries(&self, _: &str) -> Result<Vec<CountrySighting>, StoreError> {
            Ok(Vec::new())
        }
        async fn note_country(
            &self,
            _: &str,
            _: &str,
            _: Millis,
            _: Option<i64>,
        ) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn mark_scope_unused(&self, _: &str, _: Millis) -> Result<bool, StoreError> {
            Ok(false)
        }
    }

    /// `n` outcomes of a call that presented no credential.
    fn record_denials(recorder: &OutcomeRecorder, n: usize) {
        for _ in 0..n {
            recorder.record(
                None,
                "",
                "feedback.read",
                Reason::CredentialMissing,
                None,
                0,
            );
        }
    }

    struct NoEvents;

    #[async_trait]
    impl OutcomeEvents for NoEvents {
        async fn record_denials(&self, _: &[DenialEvent]) -> Result<(), StoreError> {
            Ok(())
        }
        async fn publish(&self, _: &[PublishedEvent]) -> Result<(), StoreError> {
            Ok(())
        }
        async fn record_dropped(&self, _: Millis, _: i64) -> Result<(), StoreError> {
            Ok(())
        }
    }

    /// A worker over `usage`, emptying `recorder`, with no events or geo.
    fn worker(recorder: Arc<OutcomeRecorder>, usage: Arc<Usage>) -> OutcomeWorker {
        OutcomeWorker::new(WorkerDeps {
            recorder,
            usage,
            events: Arc::new(NoEvents),
            geo: None,
            clock: Arc::new(SystemClock),
            max_groups: 10_000,
            location_window_days: 30,
            auth_failed_every_ms: 300_000,
            usage_spread: Duration::ZERO,
            drain: None,
        })
    }

    fn row(i: usize) -> UsageRow {
        UsageRow {
            minute: 0,
            key_id: format!("key_{i:05}"),
            account_id: "acc".into(),
            mode: Mode::Test,
            permission: "feedback.read".into(),
            outcome: "allowed".into(),
            country: String::new(),
            count: 1,
        }
    }

    /// A round's rows go out a slice per transaction; when one slice fails,
    /// it and the ones after it are written in the next round, and the
    /// slices already written are not written again.
    #[tokio::test]
    async fn usage_is_written_in_slices_and_a_failed_slice_is_retried_alone() {
        let usage = Arc::new(Usage::default());
        usage.fail_call.store(2, Ordering::SeqCst);
        let mut worker = worker(Arc::new(OutcomeRecorder::new(16)), usage.clone());
        let rows: Vec<UsageRow> = (0..USAGE_SLICE * 5 / 2).map(row).collect();
        worker.write_usage(rows.clone(), false).await;
        assert_eq!(*usage.calls.lock().unwrap(), vec![USAGE_SLICE; 2]);
        assert_eq!(
            worker.pending_usage.len(),
            rows.len() - USAGE_SLICE,
            "the failed slice and the rest"
        );
        worker.write_usage(Vec::new(), false).await;
        let mut calls = vec![USAGE_SLICE; 3];
        calls.push(USAGE_SLICE / 2);
        assert_eq!(*usage.calls.lock().unwrap(), calls);
        assert!(worker.pending_usage.is_empty());
        let mut stored = usage.stored.lock().unwrap().clone();
        stored.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        assert_eq!(stored, rows, "every row once");
    }

    /// A paced round spreads its slices over `usage_spread` instead of
    /// writing them back to back: slice `i` of `n` starts no sooner than
    /// `i/n` of it after the first (a sleep never ends early, so this holds
    /// however slow the machine is).
    #[tokio::test]
    async fn a_paced_round_spreads_its_slices_over_the_interval() {
        let usage = Arc::new(Usage {
            started: Mutex::new(Some(Vec::new())),
            ..Usage::default()
        });
        let mut worker = worker(Arc::new(OutcomeRecorder::new(16)), usage.clone());
        let spread = Duration::from_millis(200);
        worker.deps.usage_spread = spread;
        worker
            .write_usage((0..USAGE_SLICE * 4).map(row).collect(), true)
            .await;
        let started = usage.started.lock().unwrap().clone().unwrap();
        assert_eq!(started.len(), 4);
        for (i, at) in started.iter().enumerate() {
            let due = spread * u32::try_from(i).unwrap() / 4;
            assert!(
                at.duration_since(started[0]) >= due,
                "slice {i} started {:?} after the first, before {due:?}",
                at.duration_since(started[0])
            );
        }
    }

    /// A drain gives the runtime back every [`DRAIN_CHUNK`] outcomes: on a
    /// one-thread runtime, a task spawned before the drain runs while the
    /// ring still holds what the drain has not reached (without the yields
    /// it would run only after the drain, and see the ring empty).
    #[tokio::test(flavor = "current_thread")]
    async fn a_drain_lets_other_tasks_run_between_chunks() {
        let recorder = Arc::new(OutcomeRecorder::new(DRAIN_CHUNK * 4));
        record_denials(&recorder, DRAIN_CHUNK * 3);
        let mut worker = worker(recorder.clone(), Arc::new(Usage::default()));
        let watcher = {
            let recorder = recorder.clone();
            tokio::spawn(async move { recorder.depth() })
        };
        worker.drain().await;
        assert_eq!(recorder.depth(), 0);
        assert_eq!(
            watcher.await.unwrap(),
            DRAIN_CHUNK * 2,
            "ran after the first chunk"
        );
    }

    /// A drain ends the pacing: the rest of the round goes out back to back
    /// (a round spread over an hour here would otherwise never end).
    #[tokio::test]
    async fn a_drain_ends_a_paced_round_at_once() {
        let usage = Arc::new(Usage::default());
        let mut worker = worker(Arc::new(OutcomeRecorder::new(16)), usage.clone());
        let (drain, draining) = watch::channel(false);
        worker.deps.usage_spread = Duration::from_secs(3_600);
        worker.deps.drain = Some(draining);
        let round = worker.write_usage((0..USAGE_SLICE * 4).map(row).collect(), true);
        let stop = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drain.send_replace(true);
        };
        let (written, ()) =
            tokio::join!(tokio::time::timeout(Duration::from_secs(60), round), stop);
        assert!(written.is_ok(), "the paced round outlived the drain");
        assert_eq!(usage.calls.lock().unwrap().len(), 4, "every slice written");
    }

    /// The worker is the ring's only reader, and a round writing a busy
    /// minute lasts seconds: outcomes recorded meanwhile must be moved out
    /// between slices, not left to fill the ring. Here each slice's write
    /// sees 600 outcomes arrive in a 1,024-slot ring, three slices in all.
    #[tokio::test]
    async fn outcomes_recorded_during_a_long_usage_write_are_not_dropped() {
        let recorder = Arc::new(OutcomeRecorder::new(1_024));
        let usage = Arc::new(Usage {
            busy: Some((recorder.clone(), 600)),
            ..Usage::default()
        });
        let mut worker = worker(recorder.clone(), usage.clone());
        worker
            .write_usage((0..USAGE_SLICE * 3).map(row).collect(), true)
            .await;
        assert_eq!(usage.calls.lock().unwrap().len(), 3);
        assert_eq!(recorder.take_dropped(), 0, "outcomes dropped mid-round");
        assert!(
            recorder.depth() <= 600,
            "the ring was emptied between slices"
        );
    }
}
