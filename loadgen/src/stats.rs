//! Latency histograms (HDR, microseconds) and what the report shows of them: throughput and
//! percentiles per side, and the gateway against the direct path (ratio, added latency).

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Highest latency a histogram records (longer ones are clamped to it): 5 minutes.
const MAX_US: u64 = 300_000_000;

/// An empty latency histogram: 1 us to 5 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Records one latency, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, MAX_US);
    h.record(us).expect("value clamped into range");
}

/// What one side of a measurement did: calls per second and latency percentiles (ms).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub calls: u64,
    pub errors: u64,
    pub seconds: f64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Summary {
    /// `calls` successful calls (those in `h`) and `errors` failed ones over `elapsed`.
    pub fn of(h: &Histogram<u64>, errors: u64, elapsed: Duration) -> Summary {
        let ms = |us: u64| us as f64 / 1000.0;
        let seconds = elapsed.as_secs_f64();
        let calls = h.len();
        Summary {
            calls,
            errors,
            seconds,
            per_sec: if seconds > 0.0 {
                calls as f64 / seconds
            } else {
                0.0
            },
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// The same load against the upstream directly and through the gateway.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub direct: Summary,
    pub gateway: Summary,
}

impl Comparison {
    /// Gateway throughput as a fraction of direct throughput.
    pub fn ratio(&self) -> f64 {
        if self.direct.per_sec > 0.0 {
            self.gateway.per_sec / self.direct.per_sec
        } else {
            0.0
        }
    }

    /// Latency the gateway adds at the median, in ms (difference of the two medians).
    pub fn added_p50_ms(&self) -> f64 {
        self.gateway.p50_ms - self.direct.p50_ms
    }

    /// Latency the gateway adds at the 99th percentile, in ms.
    pub fn added_p99_ms(&self) -> f64 {
        self.gateway.p99_ms - self.direct.p99_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        // 1..=1000 ms, one call each: p50 = 500 ms, p90 = 900 ms, p99 = 990 ms, max 1000 ms.
        let mut h = histogram();
        for ms in 1..=1000u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let s = Summary::of(&h, 3, Duration::from_secs(2));
        assert_eq!(s.calls, 1000);
        assert_eq!(s.errors, 3);
        assert!((s.per_sec - 500.0).abs() < 1e-9, "{}", s.per_sec);
        // Three significant digits: within 0.1 % of the exact value.
        for (got, want) in [
            (s.p50_ms, 500.0),
            (s.p90_ms, 900.0),
            (s.p99_ms, 990.0),
            (s.max_ms, 1000.0),
            (s.mean_ms, 500.5),
        ] {
            assert!((got - want).abs() <= want * 0.001, "{got} vs {want}");
        }
    }

    #[test]
    fn out_of_range_latencies_are_clamped_not_lost() {
        let mut h = histogram();
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(3600));
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= MAX_US && h.max() <= MAX_US + MAX_US / 1000);
    }

    #[test]
    fn comparison_reports_ratio_and_added_latency() {
        let side = |per_sec: f64, p50_ms: f64, p99_ms: f64| Summary {
            calls: 1,
            errors: 0,
            seconds: 1.0,
            per_sec,
            p50_ms,
            p90_ms: p50_ms,
            p99_ms,
            max_ms: p99_ms,
            mean_ms: p50_ms,
        };
        let c = Comparison {
            direct: side(10_000.0, 0.25, 0.75),
            gateway: side(8_000.0, 0.5, 1.5),
        };
        assert!((c.ratio() - 0.8).abs() < 1e-12);
        assert!((c.added_p50_ms() - 0.25).abs() < 1e-12);
        assert!((c.added_p99_ms() - 0.75).abs() < 1e-12);
    }
}
