//! Prometheus metrics from one registry (`GET /metrics`).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 100 µs to 5 s: cached reads sit at the low end.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Acknowledgements take tens to hundreds of microseconds; `ACK_WAIT` is
/// 150 ms.
const ACK_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005,
    0.0075, 0.01, 0.025, 0.05, 0.1, 0.15,
];

pub struct Metrics {
    /// Tells registries apart in the per-thread series (tests run several
    /// apps in one process).
    id: u64,
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    cache_requests: IntCounterVec,
    cache_invalidations: IntCounterVec,
    cache_invalidation_duration: Histogram,
    cache_coalesced: IntCounterVec,
    cache_circuit_open: IntGauge,
    /// L1 lookups, resolved once: they are on the hottest path.
    l1_hits: [IntCounter; 2],
    l1_misses: [IntCounter; 2],
    l1_ack_duration: Histogram,
    l1_lease: IntGauge,
    db_pool: IntGaugeVec,
    db_reads: IntCounterVec,
    db_replica_usable: IntGaugeVec,
    cache_warmups: IntCounter,
    cache_warmed_items: IntCounter,
    webhook_deliveries: IntCounterVec,
    webhook_lag: Gauge,
}

/// Lookups of one layer, for the admin view.
#[derive(Debug, Clone, Copy)]
pub struct LayerCounts {
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
}

/// The pool's state at scrape time.
pub struct PoolState {
    pub max_size: usize,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
}

impl Metrics {
    pub fn new() -> Self {
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route template and status",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )
        .expect("valid metric");
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "cache_requests_total",
                "Cache lookups by layer, key family and result (hit, miss, error, skipped)",
            ),
            &["layer", "family", "result"],
        )
        .expect("valid metric");
        let cache_invalidations = IntCounterVec::new(
            Opts::new(
                "cache_invalidations_total",
                "Cache invalidations by result (done, skipped while Redis is away, failed)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let cache_invalidation_duration = Histogram::with_opts(
            HistogramOpts::new(
                "cache_invalidation_duration_seconds",
                "Duration of one invalidation",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let cache_coalesced = IntCounterVec::new(
            Opts::new(
                "cache_coalesced_loads_total",
                "Misses that waited for the load of the same key already in flight",
            ),
            &["family"],
        )
        .expect("valid metric");
        let cache_circuit_open = IntGauge::new(
            "cache_redis_circuit_open",
            "1 while Redis is skipped (unreachable, slow or not configured)",
        )
        .expect("valid metric");
        let l1_ack_duration = Histogram::with_opts(
            HistogramOpts::new(
                "cache_l1_ack_duration_seconds",
                "From a write's announcement to the last L1 acknowledgement",
            )
            .buckets(ACK_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let l1_lease = IntGauge::new(
            "cache_l1_lease_held",
            "1 while this instance holds its L1 lease and serves from L1",
        )
        .expect("valid metric");
        let l1_counter =
            |family: &str, result: &str| cache_requests.with_label_values(&["l1", family, result]);
        let l1_hits = [l1_counter("item", "hit"), l1_counter("listing", "hit")];
        let l1_misses = [l1_counter("item", "miss"), l1_counter("listing", "miss")];
        let db_pool = IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "PostgreSQL pool: max, size, in_use, available, waiting",
            ),
            &["state"],
        )
        .expect("valid metric");

        let registry = Registry::new();
        registry
            .register(Box::new(http_requests.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(http_duration.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(cache_requests.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(cache_invalidations.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(cache_invalidation_duration.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(cache_coalesced.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(cache_circuit_open.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(db_pool.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(l1_ack_duration.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(l1_lease.clone()))
            .expect("unique metric");
        let db_reads = IntCounterVec::new(
            Opts::new(
                "db_reads_total",
                "Reads that may go to a replica, by where they went (replica, primary)",
            ),
            &["target"],
        )
        .expect("valid metric");
        let db_replica_usable = IntGaugeVec::new(
            Opts::new(
                "db_replica_usable",
                "1 while a replica answers within REPLICA_MAX_LAG_MS, by its place in DATABASE_REPLICA_URLS",
            ),
            &["replica"],
        )
        .expect("valid metric");
        let cache_warmups = IntCounter::new(
            "cache_warmups_total",
            "Warm-ups after a start or a flush, finished",
        )
        .expect("valid metric");
        let cache_warmed_items = IntCounter::new(
            "cache_warmed_items_total",
            "Most-read items loaded by warm-ups",
        )
        .expect("valid metric");
        registry
            .register(Box::new(cache_warmups.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(cache_warmed_items.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(db_reads.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(db_replica_usable.clone()))
            .expect("unique metric");
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "webhook_deliveries_total",
                "Webhook delivery attempts by result (delivered, retry, failed, gone)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let webhook_lag = Gauge::new(
            "webhook_outbox_lag_seconds",
            "Age of the oldest webhook delivery not yet delivered (0: none pending)",
        )
        .expect("valid metric");
        registry
            .register(Box::new(webhook_deliveries.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(webhook_lag.clone()))
            .expect("unique metric");
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            registry,
            http_requests,
            http_duration,
            cache_requests,
            cache_invalidations,
            cache_invalidation_duration,
            cache_coalesced,
            cache_circuit_open,
            l1_hits,
            l1_misses,
            l1_ack_duration,
            l1_lease,
            db_pool,
            db_reads,
            db_replica_usable,
            cache_warmups,
            cache_warmed_items,
            webhook_deliveries,
            webhook_lag,
        }
    }

    /// The series are looked up once per thread and kept: a label lookup
    /// (hashing, a lock) on every request cost 4 % of a cached read's CPU.
    /// A thread sees a few dozen series; the one just used moves to the
    /// front, so a steady load finds its own at once.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        struct Series {
            registry: u64,
            method: String,
            route: String,
            status: u16,
            count: IntCounter,
            duration: Histogram,
        }
        thread_local! {
            static SERIES: RefCell<Vec<Series>> = const { RefCell::new(Vec::new()) };
        }
        SERIES.with(|series| {
            let mut series = series.borrow_mut();
            let found = series.iter().position(|known| {
                known.status == status
                    && known.registry == self.id
                    && known.route == route
                    && known.method == method
            });
            let index = found.unwrap_or_else(|| {
                series.push(Series {
                    registry: self.id,
                    method: method.to_owned(),
                    route: route.to_owned(),
                    status,
                    count: self.http_requests.with_label_values(&[
                        method,
                        route,
                        &status.to_string(),
                    ]),
                    duration: self.http_duration.with_label_values(&[method, route]),
                });
                series.len() - 1
            });
            series.swap(0, index);
            series[0].count.inc();
            series[0].duration.observe(elapsed.as_secs_f64());
        });
    }

    pub fn cache_lookup(&self, family: &str, result: &str) {
        self.cache_requests
            .with_label_values(&["redis", family, result])
            .inc();
    }

    pub fn l1_lookup(&self, family: &str, hit: bool) {
        let index = usize::from(family != "item");
        if hit {
            self.l1_hits[index].inc();
        } else {
            self.l1_misses[index].inc();
        }
    }

    pub fn l1_ack(&self, elapsed: Duration) {
        self.l1_ack_duration.observe(elapsed.as_secs_f64());
    }

    pub fn l1_serving(&self, serving: bool) {
        self.l1_lease.set(i64::from(serving));
    }

    /// Hits, misses and errors of a layer (`l1`, `redis`), all families.
    pub fn layer_counts(&self, layer: &str) -> LayerCounts {
        let count = |result: &str| {
            ["item", "listing"]
                .iter()
                .map(|family| {
                    self.cache_requests
                        .with_label_values(&[layer, family, result])
                        .get()
                })
                .sum()
        };
        LayerCounts {
            hits: count("hit"),
            misses: count("miss"),
            errors: count("error"),
        }
    }

    pub fn coalesced(&self, family: &str) {
        self.cache_coalesced.with_label_values(&[family]).inc();
    }

    /// A warm-up finished, having loaded `items` of the most-read items.
    pub fn warmed(&self, items: usize) {
        self.cache_warmups.inc();
        self.cache_warmed_items.inc_by(items as u64);
    }

    /// A webhook delivery attempt ended: `delivered`, `retry`, `failed`, `gone`.
    pub fn webhook_attempt(&self, result: &str) {
        self.webhook_deliveries.with_label_values(&[result]).inc();
    }

    pub fn webhook_lag(&self, seconds: f64) {
        self.webhook_lag.set(seconds);
    }

    /// A read that could have gone to a replica: `replica` or `primary`.
    pub fn db_read(&self, target: &str) {
        self.db_reads.with_label_values(&[target]).inc();
    }

    pub fn replica_usable(&self, replica: usize, usable: bool) {
        self.db_replica_usable
            .with_label_values(&[&replica.to_string()])
            .set(i64::from(usable));
    }

    pub fn invalidation(&self, result: &str, elapsed: Option<Duration>) {
        self.cache_invalidations.with_label_values(&[result]).inc();
        if let Some(elapsed) = elapsed {
            self.cache_invalidation_duration
                .observe(elapsed.as_secs_f64());
        }
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, pool: PoolState, circuit_open: bool) -> String {
        self.cache_circuit_open.set(i64::from(circuit_open));
        for (state, value) in [
            ("max", pool.max_size),
            ("size", pool.size),
            ("in_use", pool.size.saturating_sub(pool.available)),
            ("available", pool.available),
            ("waiting", pool.waiting),
        ] {
            self.db_pool.with_label_values(&[state]).set(value as i64);
        }
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding of gathered metrics");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
