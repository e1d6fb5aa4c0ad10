//! Shard metrics: the `ShardObserver` the shards report to from their own threads. Every
//! collector is atomic, so a tick never waits on a reader of `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use plaza_actors::shards::ShardObserver;
use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

/// Tick buckets (seconds): fine around the millisecond, where lateness and work land.
const TICK_BUCKETS: [f64; 16] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

pub struct ShardMetrics {
    pub running: IntGauge,
    pub ticks: IntCounter,
    pub overruns: IntCounter,
    pub skipped: IntCounter,
    pub inputs: IntCounter,
    pub inputs_refused: IntCounter,
    pub subscribers: IntGauge,
    pub crashes: IntCounter,
    pub tick_duration: Histogram,
    pub tick_lateness: Histogram,
    pub lateness_max: Gauge,
    lateness_max_ns: AtomicU64,
}

impl ShardMetrics {
    pub fn new(registry: &Registry) -> Result<ShardMetrics, prometheus::Error> {
        let hist = |name: &str, help: &str| Histogram::with_opts(HistogramOpts::new(name, help).buckets(TICK_BUCKETS.to_vec()));
        let m = ShardMetrics {
            running: IntGauge::new("shards_running", "Shards running")?,
            ticks: IntCounter::new("shard_ticks_total", "Shard ticks run")?,
            overruns: IntCounter::new("shard_tick_overruns_total", "Ticks that took longer than their budget (1 / tick_hz)")?,
            skipped: IntCounter::new("shard_ticks_skipped_total", "Ticks dropped by shards that fell too far behind")?,
            inputs: IntCounter::new("shard_inputs_total", "Inputs queued for shards")?,
            inputs_refused: IntCounter::new("shard_inputs_refused_total", "Inputs refused (rate limit, invalid)")?,
            subscribers: IntGauge::new("shard_subscribers", "Live subscribers of all shards")?,
            crashes: IntCounter::new("shard_crashes_total", "Shards stopped by a panicking simulation")?,
            tick_duration: hist("shard_tick_duration_seconds", "Work of one tick: inputs, step, snapshot, publish")?,
            tick_lateness: hist("shard_tick_lateness_seconds", "How late a tick started against its fixed schedule")?,
            lateness_max: Gauge::new("shard_tick_lateness_max_seconds", "Latest tick start seen against the schedule")?,
            lateness_max_ns: AtomicU64::new(0),
        };
        registry.register(Box::new(m.running.clone()))?;
        registry.register(Box::new(m.ticks.clone()))?;
        registry.register(Box::new(m.overruns.clone()))?;
        registry.register(Box::new(m.skipped.clone()))?;
        registry.register(Box::new(m.inputs.clone()))?;
        registry.register(Box::new(m.inputs_refused.clone()))?;
        registry.register(Box::new(m.subscribers.clone()))?;
        registry.register(Box::new(m.crashes.clone()))?;
        registry.register(Box::new(m.tick_duration.clone()))?;
        registry.register(Box::new(m.tick_lateness.clone()))?;
        registry.register(Box::new(m.lateness_max.clone()))?;
        Ok(m)
    }

    pub fn json(&self) -> serde_json::Value {
        let hist = |h: &Histogram| super::summary(prometheus::core::Metric::metric(h).get_histogram());
        let mut lateness = hist(&self.tick_lateness);
        lateness["max_ms"] = serde_json::json!(self.lateness_max_ns.load(Ordering::Relaxed) as f64 / 1e6);
        serde_json::json!({
            "running": self.running.get(),
            "ticks": self.ticks.get(),
            "overruns": self.overruns.get(),
            "skipped_ticks": self.skipped.get(),
            "inputs": self.inputs.get(),
            "inputs_refused": self.inputs_refused.get(),
            "subscribers": self.subscribers.get(),
            "crashes": self.crashes.get(),
            "tick_duration": hist(&self.tick_duration),
            "tick_lateness": lateness,
        })
    }
}

impl ShardObserver for ShardMetrics {
    fn started(&self, _name: &str) {
        self.running.inc();
    }

    fn stopped(&self, _name: &str, crashed: bool) {
        self.running.dec();
        if crashed {
            self.crashes.inc();
        }
    }

    fn tick(&self, took: Duration, lateness: Duration) {
        self.ticks.inc();
        self.tick_duration.observe(took.as_secs_f64());
        self.tick_lateness.observe(lateness.as_secs_f64());
        let ns = lateness.as_nanos() as u64;
        if self.lateness_max_ns.fetch_max(ns, Ordering::Relaxed) < ns {
            self.lateness_max.set(lateness.as_secs_f64());
        }
    }

    fn overrun(&self) {
        self.overruns.inc();
    }

    fn skipped(&self, ticks: u64) {
        self.skipped.inc_by(ticks);
    }

    fn input(&self, accepted: bool) {
        if accepted { self.inputs.inc() } else { self.inputs_refused.inc() }
    }

    fn subscribers(&self, change: i64) {
        self.subscribers.add(change);
    }
}
