//! Request metrics in a per-app Prometheus registry (no process globals, so parallel tests
//! don't share counters). `/metrics` renders the same families as JSON or Prometheus text.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use plaza_actors::rooms::RoomStats;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub struct Metrics {
    pub registry: Registry,
    pub requests_total: IntCounter,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    /// Open WebSockets and SSE streams.
    pub streams_open: IntGauge,
    pub frames_in: IntCounter,
    pub frames_out: IntCounter,
    pub slow_consumers: IntCounter,
    /// Commit → frame handed to the socket.
    pub fanout_latency: Histogram,
    pub jobs: JobMetrics,
}

/// Job counters and timings, fed by the JobQueue through `JobObserver`.
#[derive(Clone)]
pub struct JobMetrics {
    pub queued: IntCounter,
    pub succeeded: IntCounter,
    pub failed_attempts: IntCounter,
    pub dead: IntCounter,
    pub pending: IntGauge,
    pub running: IntGauge,
    /// Due (`run_at`) → attempt started.
    pub queue_latency: Histogram,
    pub run_time: Histogram,
}

/// Job timings run from milliseconds to minutes.
const JOB_BUCKETS: [f64; 14] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 60.0, 300.0];

impl JobMetrics {
    fn new(registry: &Registry) -> Result<JobMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let histogram = |name: &str, help: &str| -> Result<Histogram, prometheus::Error> {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(JOB_BUCKETS.to_vec()))?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        Ok(JobMetrics {
            queued: counter("jobs_queued_total", "Jobs enqueued")?,
            succeeded: counter("jobs_succeeded_total", "Jobs that succeeded")?,
            failed_attempts: counter("jobs_failed_attempts_total", "Job attempts that failed (error, panic or timeout)")?,
            dead: counter("jobs_dead_total", "Jobs dead-lettered after their last attempt")?,
            pending: gauge("jobs_pending", "Jobs waiting to run")?,
            running: gauge("jobs_running", "Job attempts running")?,
            queue_latency: histogram("job_queue_latency_seconds", "Time from a job being due to its attempt starting")?,
            run_time: histogram("job_run_seconds", "Time one attempt ran")?,
        })
    }

    pub fn json(&self) -> serde_json::Value {
        let hist = |h: &Histogram| summary(prometheus::core::Metric::metric(h).get_histogram());
        serde_json::json!({
            "queued": self.queued.get(), "pending": self.pending.get(), "running": self.running.get(),
            "succeeded": self.succeeded.get(), "failed_attempts": self.failed_attempts.get(), "dead": self.dead.get(),
            "queue_latency": hist(&self.queue_latency), "run_time": hist(&self.run_time),
        })
    }
}

impl plaza_actors::jobs::JobObserver for JobMetrics {
    fn queued(&self) {
        self.queued.inc();
    }
    fn started(&self, queue_latency: std::time::Duration) {
        self.queue_latency.observe(queue_latency.as_secs_f64());
    }
    fn succeeded(&self, run_time: std::time::Duration) {
        self.succeeded.inc();
        self.run_time.observe(run_time.as_secs_f64());
    }
    fn failed(&self, run_time: std::time::Duration) {
        self.failed_attempts.inc();
        self.run_time.observe(run_time.as_secs_f64());
    }
    fn dead(&self) {
        self.dead.inc();
    }
    fn depth(&self, pending: usize, running: usize) {
        self.pending.set(pending as i64);
        self.running.set(running as i64);
    }
}

/// Latency buckets (seconds): fine below 10 ms, where a healthy request lands.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("plaza".into()), None)?;
        let requests_total = IntCounter::new("requests_total", "HTTP requests served")?;
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route, method and status"),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by route")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        let streams_open = IntGauge::new("ws_open", "Open WebSockets and SSE streams")?;
        let frames_in = IntCounter::new("ws_frames_in_total", "Frames received from clients")?;
        let frames_out = IntCounter::new("ws_frames_out_total", "Frames sent to clients")?;
        let slow_consumers = IntCounter::new("ws_slow_consumers_total", "Streams closed as slow consumers")?;
        let fanout_latency = Histogram::with_opts(
            HistogramOpts::new("fanout_latency_seconds", "Commit to frame handed to the socket").buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(requests_total.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(streams_open.clone()))?;
        registry.register(Box::new(frames_in.clone()))?;
        registry.register(Box::new(frames_out.clone()))?;
        registry.register(Box::new(slow_consumers.clone()))?;
        registry.register(Box::new(fanout_latency.clone()))?;
        let jobs = JobMetrics::new(&registry)?;
        Ok(Metrics { registry, requests_total, requests, latency, streams_open, frames_in, frames_out, slow_consumers, fanout_latency, jobs })
    }

    pub fn ws_json(&self) -> serde_json::Value {
        let fanout = prometheus::core::Metric::metric(&self.fanout_latency);
        serde_json::json!({
            "open": self.streams_open.get(),
            "frames_in": self.frames_in.get(),
            "frames_out": self.frames_out.get(),
            "slow_consumers_dropped": self.slow_consumers.get(),
            "fanout_latency": summary(fanout.get_histogram()),
        })
    }

    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests_total.inc();
        self.requests.with_label_values(&[route, method, &status.to_string()]).inc();
        self.latency.with_label_values(&[route, method]).observe(seconds);
    }

    pub fn prometheus_text(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder.encode_to_string(&self.registry.gather()).unwrap_or_default()
    }

    /// `{"total": N, "routes": {"GET /path": {"count", "mean_ms", "p50_ms", "p99_ms"}}}`;
    /// quantiles are read off the histogram buckets (upper bound of the bucket reached).
    pub fn requests_json(&self) -> serde_json::Value {
        let mut routes = serde_json::Map::new();
        for family in self.registry.gather() {
            if !family.name().ends_with("http_request_duration_seconds") {
                continue;
            }
            for m in family.get_metric() {
                let label = |n: &str| {
                    m.get_label().iter().find(|l| l.name() == n).map(|l| l.value().to_string()).unwrap_or_default()
                };
                routes.insert(format!("{} {}", label("method"), label("route")), summary(m.get_histogram()));
            }
        }
        serde_json::json!({"total": self.requests_total.get(), "routes": routes})
    }
}

/// `{"count","mean_ms","p50_ms","p99_ms"}` of a seconds histogram; quantiles are the upper
/// bound of the bucket they fall in.
fn summary(h: &prometheus::proto::Histogram) -> serde_json::Value {
    let count = h.get_sample_count();
    let quantile = |q: f64| {
        let want = (count as f64 * q).ceil() as u64;
        h.get_bucket()
            .iter()
            .find(|b| b.cumulative_count() >= want)
            .map(|b| b.upper_bound() * 1000.0)
            .unwrap_or(f64::INFINITY)
    };
    serde_json::json!({
        "count": count,
        "mean_ms": if count == 0 { 0.0 } else { h.get_sample_sum() * 1000.0 / count as f64 },
        "p50_ms": quantile(0.5),
        "p99_ms": quantile(0.99),
    })
}

/// A counter and how to read its value off the room stats.
type StatCounter = (IntCounter, fn(&RoomStats) -> u64);

/// The rooms' counters ([`RoomStats`], kept by the rooms themselves as plain atomics) as
/// Prometheus families, read when scraped.
struct RoomCollector {
    stats: Arc<RoomStats>,
    rooms: IntGauge,
    members: IntGauge,
    counters: [StatCounter; 4],
}

impl RoomCollector {
    fn new(stats: Arc<RoomStats>) -> Result<RoomCollector, prometheus::Error> {
        Ok(RoomCollector {
            stats,
            rooms: IntGauge::new("rooms", "Running rooms")?,
            members: IntGauge::new("room_members", "Members of running rooms")?,
            counters: [
                (IntCounter::new("room_events_in_total", "Room events, presence updates and state patches received")?, |s| {
                    RoomStats::get(&s.events_in)
                }),
                (IntCounter::new("room_events_out_total", "Room frames handed to member connections")?, |s| {
                    RoomStats::get(&s.events_out)
                }),
                (IntCounter::new("room_slow_members_dropped_total", "Member connections dropped from rooms as slow")?, |s| {
                    RoomStats::get(&s.slow_members_dropped)
                }),
                (IntCounter::new("room_state_patches_total", "Room state patches applied")?, |s| RoomStats::get(&s.state_patches)),
            ],
        })
    }
}

impl prometheus::core::Collector for RoomCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let counters = self.counters.iter().flat_map(|(c, _)| c.desc());
        self.rooms.desc().into_iter().chain(self.members.desc()).chain(counters).collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.rooms.set(self.stats.rooms.load(Ordering::Relaxed));
        self.members.set(self.stats.members.load(Ordering::Relaxed));
        for (counter, read) in &self.counters {
            // The stats only grow: catch the counter up.
            let (now, seen) = (read(&self.stats), counter.get());
            if now > seen {
                counter.inc_by(now - seen);
            }
        }
        let counters = self.counters.iter().flat_map(|(c, _)| c.collect());
        self.rooms.collect().into_iter().chain(self.members.collect()).chain(counters).collect()
    }
}

impl Metrics {
    /// Adds the rooms' counters to the registry (Prometheus text).
    pub fn watch_rooms(&self, stats: Arc<RoomStats>) -> Result<(), prometheus::Error> {
        self.registry.register(Box::new(RoomCollector::new(stats)?))
    }
}

/// The `rooms` section of `/metrics` JSON.
pub fn rooms_json(stats: &RoomStats) -> serde_json::Value {
    serde_json::json!({
        "active": stats.rooms.load(Ordering::Relaxed),
        "members": stats.members.load(Ordering::Relaxed),
        "events_in": RoomStats::get(&stats.events_in),
        "events_out": RoomStats::get(&stats.events_out),
        "events_in_per_s": RoomStats::get(&stats.events_in_per_s),
        "events_out_per_s": RoomStats::get(&stats.events_out_per_s),
        "slow_members_dropped": RoomStats::get(&stats.slow_members_dropped),
        "state_patches": RoomStats::get(&stats.state_patches),
    })
}
