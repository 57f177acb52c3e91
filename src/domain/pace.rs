//! Background writes spread evenly over time: the last-used flush and the
//! outcome worker's usage rounds each write a round's rows a slice at a
//! time, and a [`Pace`] says when each slice is due.
//!
//! Both rounds come every `usage_flush_interval` and, under a burst of new
//! keys (20,000 a second), hold ~100,000 rows each. Written back to back,
//! or with a short fixed pause between slices, a round kept a database
//! core busy for a few seconds of every interval and left it idle for the
//! rest, and cold lookups beside it were slowest in those seconds
//! (`bench/scale.sh`).
//! Spread evenly over most of the interval, the same work is a steady
//! fraction of a core.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The part of a flush interval a round's writes are spread over: a
/// quarter is left so that a round that runs late does not delay the next.
pub fn spread_over(flush_interval: Duration) -> Duration {
    flush_interval * 3 / 4
}

/// When each of a round's `slices` is due: slice `i` no sooner than `i/n`
/// of `spread` after the round started. Once the server drains, every
/// slice is due at once, so that shutdown does not wait out the spread.
pub struct Pace {
    started: Instant,
    spread: Duration,
    slices: usize,
    /// Turns true when the server drains. `None`: never.
    drain: Option<watch::Receiver<bool>>,
}

impl Pace {
    /// A round starting now. A zero `spread` is no pacing at all.
    pub fn new(spread: Duration, slices: usize, drain: Option<watch::Receiver<bool>>) -> Self {
        Self {
            started: Instant::now(),
            spread,
            slices: slices.max(1),
            drain,
        }
    }

    /// Waits until slice `i` (0-based) is due.
    pub async fn until_due(&mut self, i: usize) {
        if self.spread.is_zero() || i == 0 {
            return;
        }
        let share = i.min(self.slices) as f64 / self.slices as f64;
        let sleep = tokio::time::sleep_until(self.started + self.spread.mul_f64(share));
        let Some(drain) = self.drain.as_mut() else {
            return sleep.await;
        };
        let drained = tokio::select! {
            () = sleep => false,
            // Also ends the wait if the sender is gone: a server that
            // dropped its drain signal is going away.
            _ = drain.wait_for(|draining| *draining) => true,
        };
        if drained {
            self.spread = Duration::ZERO;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bound for what must not wait: far below any spread in these tests.
    const PROMPT: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn slices_are_due_evenly_over_the_spread() {
        let spread = Duration::from_millis(300);
        let started = Instant::now();
        let mut pace = Pace::new(spread, 3, None);
        for i in 0..3u32 {
            pace.until_due(i as usize).await;
            let due = spread * i / 3;
            assert!(started.elapsed() >= due, "slice {i} due at {due:?}");
        }
        // Slice 3 of 3 is the round's end: due, never later.
        pace.until_due(7).await;
        assert!(started.elapsed() >= spread);
    }

    #[tokio::test]
    async fn a_drain_makes_the_rest_due_at_once() {
        let (tx, rx) = watch::channel(false);
        let mut pace = Pace::new(Duration::from_secs(3_600), 10, Some(rx));
        let waiting = tokio::spawn(async move {
            pace.until_due(5).await;
            pace.until_due(9).await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "slice 5 is due in half an hour");
        tx.send_replace(true);
        let ended = tokio::time::timeout(PROMPT, waiting).await;
        assert!(ended.is_ok(), "no wait once the server drains");
    }

    #[tokio::test]
    async fn no_spread_is_no_wait() {
        let mut pace = Pace::new(Duration::ZERO, 3, None);
        let all = async {
            for i in 0..3 {
                pace.until_due(i).await;
            }
        };
        assert!(tokio::time::timeout(PROMPT, all).await.is_ok());
    }
}
