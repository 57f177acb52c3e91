//! Head sampling, decided before a request's span exists: the SDK's own
//! sampler only runs once the span has been built (names, attributes, a
//! parent extracted from the headers), which costs the unsampled 99 % of
//! requests at a 1 % ratio almost as much as the sampled ones. Here the
//! decision is a header lookup and a thread-local xorshift; what it lets
//! through reaches an always-on SDK sampler.
//!
//! `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` keep their meaning
//! (OpenTelemetry SDK environment variables specification): `always_on`,
//! `always_off`, `traceidratio`, and the `parentbased_*` forms, which
//! follow the sampled flag of an incoming W3C `traceparent` (trace context
//! §3.2) and apply their root rule to calls without one. Unset or unknown:
//! `parentbased_always_on`, the specification's default.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The parsed sampler: whether an incoming `traceparent` decides, and the
/// share of the remaining calls that are sampled, as a threshold on a
/// uniform `u64` (`u64::MAX` = every call, 0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadSampler {
    pub parent_based: bool,
    pub threshold: u64,
}

impl HeadSampler {
    #[cfg(test)]
    pub const ALWAYS_ON: Self = Self {
        parent_based: true,
        threshold: u64::MAX,
    };

    /// From the values of `OTEL_TRACES_SAMPLER` and `_ARG`. A ratio that is
    /// missing, unparsable or outside [0, 1] is 1.0, as the SDKs read it.
    pub fn from_env_values(sampler: Option<&str>, arg: Option<&str>) -> Self {
        let ratio = || {
            arg.and_then(|a| a.trim().parse::<f64>().ok())
                .filter(|r| (0.0..=1.0).contains(r))
                .unwrap_or(1.0)
        };
        let name = sampler.map(|s| s.trim().to_ascii_lowercase());
        let (parent_based, ratio) = match name.as_deref() {
            Some("always_on") => (false, 1.0),
            Some("always_off") => (false, 0.0),
            Some("traceidratio") => (false, ratio()),
            Some("parentbased_always_off") => (true, 0.0),
            Some("parentbased_traceidratio") => (true, ratio()),
            _ => (true, 1.0),
        };
        Self {
            parent_based,
            threshold: threshold(ratio),
        }
    }

    /// Reads `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
    pub fn from_env() -> Self {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        Self::from_env_values(
            var("OTEL_TRACES_SAMPLER").as_deref(),
            var("OTEL_TRACES_SAMPLER_ARG").as_deref(),
        )
    }

    /// Whether a call carrying `traceparent` (if any) gets a span.
    pub fn sample(&self, traceparent: Option<&[u8]>) -> bool {
        if self.parent_based
            && let Some(sampled) = traceparent.and_then(sampled_flag)
        {
            return sampled;
        }
        match self.threshold {
            0 => false,
            u64::MAX => true,
            t => next_random() < t,
        }
    }
}

fn threshold(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        u64::MAX
    } else if ratio <= 0.0 {
        0
    } else {
        // In range: the cast saturates, and below 1.0 it stays under MAX.
        (ratio * u64::MAX as f64) as u64
    }
}

/// The sampled flag of a W3C `traceparent`
/// (`version-traceid-parentid-flags`, trace context §3.2), or `None` when
/// the header is malformed (then the call is a root, as the specification
/// asks). Versions above 00 may append fields; `ff` is invalid.
pub fn sampled_flag(header: &[u8]) -> Option<bool> {
    if header.len() < 55 || (header.len() > 55 && header.get(55) != Some(&b'-')) {
        return None;
    }
    let hex = |b: &[u8]| b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let zero = |b: &[u8]| b.iter().all(|c| *c == b'0');
    let (version, trace_id, parent_id, flags) = (
        &header[0..2],
        &header[3..35],
        &header[36..52],
        &header[53..55],
    );
    if header[2] != b'-' || header[35] != b'-' || header[52] != b'-' {
        return None;
    }
    if !hex(version) || version == b"ff" || (version == b"00" && header.len() != 55) {
        return None;
    }
    if !hex(trace_id) || zero(trace_id) || !hex(parent_id) || zero(parent_id) || !hex(flags) {
        return None;
    }
    let low = match flags[1] {
        c @ b'0'..=b'9' => c - b'0',
        c => c - b'a' + 10,
    };
    Some(low & 1 == 1)
}

/// Seeds each thread's generator apart (a Weyl sequence: distinct odd steps).
static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);

thread_local! {
    static STATE: Cell<u64> = const { Cell::new(0) };
}

/// xorshift64*: per thread, no lock, no shared cache line.
fn next_random() -> u64 {
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            let seed = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
            x = splitmix(seed) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The process's sampler, set once at start-up with trace export.
static PARENT_BASED: AtomicBool = AtomicBool::new(true);
static THRESHOLD: AtomicU64 = AtomicU64::new(u64::MAX);

pub(super) fn install(sampler: HeadSampler) {
    PARENT_BASED.store(sampler.parent_based, Ordering::Relaxed);
    THRESHOLD.store(sampler.threshold, Ordering::Relaxed);
}

pub(super) fn installed() -> HeadSampler {
    HeadSampler {
        parent_based: PARENT_BASED.load(Ordering::Relaxed),
        threshold: THRESHOLD.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLED: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const UNSAMPLED: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

    #[test]
    fn traceparent_flags_are_read_and_junk_is_a_root() {
        assert_eq!(sampled_flag(SAMPLED), Some(true));
        assert_eq!(sampled_flag(UNSAMPLED), Some(false));
        assert_eq!(
            sampled_flag(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"),
            Some(true)
        );
        // A later version may append fields after a dash.
        assert_eq!(
            sampled_flag(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what"),
            Some(true)
        );
        for junk in [
            &b""[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert_eq!(
                sampled_flag(junk),
                None,
                "{}",
                String::from_utf8_lossy(junk)
            );
        }
    }

    #[test]
    fn the_standard_variables_keep_their_meaning() {
        let s = |name: &str, arg: Option<&str>| HeadSampler::from_env_values(Some(name), arg);
        assert_eq!(
            HeadSampler::from_env_values(None, None),
            HeadSampler::ALWAYS_ON
        );
        assert_eq!(s("bogus", None), HeadSampler::ALWAYS_ON);
        assert_eq!(s("always_off", None).threshold, 0);
        assert!(!s("always_on", None).parent_based);
        let ratio = s("parentbased_traceidratio", Some("0.25"));
        assert!(ratio.parent_based);
        assert!(ratio.threshold.abs_diff(u64::MAX / 4) <= 1);
        assert_eq!(s("traceidratio", Some("2")).threshold, u64::MAX);
        assert_eq!(s("traceidratio", Some("x")).threshold, u64::MAX);
        assert_eq!(s("TraceIdRatio", Some("0")).threshold, 0);
    }

    #[test]
    fn parents_decide_when_parent_based_and_the_ratio_holds_otherwise() {
        let never = HeadSampler::from_env_values(Some("parentbased_traceidratio"), Some("0"));
        assert!(!never.sample(None));
        assert!(never.sample(Some(SAMPLED)));
        assert!(!never.sample(Some(UNSAMPLED)));
        assert!(!never.sample(Some(b"garbage")));
        let always = HeadSampler::from_env_values(Some("parentbased_always_on"), None);
        assert!(always.sample(None));
        assert!(!always.sample(Some(UNSAMPLED)));
        // Not parent-based: the caller's flag is ignored.
        let ratio_only = HeadSampler::from_env_values(Some("traceidratio"), Some("0"));
        assert!(!ratio_only.sample(Some(SAMPLED)));

        let one_percent = HeadSampler::from_env_values(Some("traceidratio"), Some("0.01"));
        let n = 200_000;
        let hits = (0..n).filter(|_| one_percent.sample(None)).count();
        assert!(
            (1_500..2_500).contains(&hits),
            "{hits} of {n} sampled at 1%"
        );
    }
}
