//! One typed configuration, built in layers: defaults < config file (`--config`, TOML) <
//! `PLAZA_*` environment < command-line flags. Every limit has a named default here, and
//! `plaza --help` shows each one.

pub mod accounts;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

pub const DEFAULT_PORT: u16 = 4321;
pub const DEFAULT_DB: &str = "plaza.db";
pub const DEFAULT_MANIFEST: &str = "plaza.json";
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
pub const DEFAULT_RATE_LIMIT_MAX: u64 = 6_000;
pub const DEFAULT_RATE_LIMIT_WINDOW_SECS: u64 = 60;
/// Sessions (guest, magic code, minted) one client IP may create per minute: enough for a
/// household behind one NAT, far too few to fill the session table.
pub const DEFAULT_SESSION_RATE_LIMIT: u64 = 30;
pub const DEFAULT_CHANGELOG_RETAIN: i64 = 100_000;
pub const DEFAULT_DRAIN_SECS: u64 = 10;
/// Read threads (and read connections): a few threads that stay busy beat many that are
/// woken per request.
pub const DEFAULT_READ_POOL: u32 = 4;
pub const DEFAULT_SESSION_TTL_SECS: u64 = 30 * 24 * 3600;
/// Frames a socket may have waiting before it is cut off as a slow consumer.
pub const DEFAULT_WS_OUTBOUND_MAX: usize = 1024;
pub const DEFAULT_WS_MAX_FRAME_BYTES: usize = 64 * 1024;
pub const DEFAULT_WS_MAX_SUBSCRIPTIONS: usize = 100;
pub const DEFAULT_WS_MAX_PER_IP: usize = 1000;
/// Server ping interval and the silence after which a client is dropped.
pub const HEARTBEAT_INTERVAL_MS: u64 = 10_000;
pub const CLIENT_TIMEOUT_MS: u64 = 30_000;
/// Most missed events a `subscribe` with `since` replays; further behind, pull first.
pub const DEFAULT_WS_REPLAY_MAX: usize = 10_000;
/// Push `op_id`s remembered for dedup.
pub const DEFAULT_OP_RETAIN: i64 = 100_000;
/// Ops one batch or transact may carry for a session (the admin may send `MAX_BULK_OPS`).
pub const DEFAULT_BULK_MAX_OPS_SESSION: usize = 100;
/// Ops one batch, transact or import chunk may carry for the admin.
pub const MAX_BULK_OPS: usize = 10_000;
/// Room limits and timings: see `plaza_actors::rooms` for each default.
pub use plaza_actors::rooms::{
    DEFAULT_BUFFER as DEFAULT_ROOM_BUFFER, DEFAULT_EVENTS_PER_SEC as DEFAULT_ROOM_EVENTS_PER_SEC,
    DEFAULT_EVENT_MAX_BYTES as DEFAULT_ROOM_EVENT_MAX_BYTES, DEFAULT_MAX_MEMBERS as DEFAULT_ROOM_MAX_MEMBERS,
    DEFAULT_MAX_PER_CONNECTION as DEFAULT_ROOM_MAX_PER_CONNECTION, DEFAULT_MAX_ROOMS as DEFAULT_ROOM_MAX_ROOMS,
    DEFAULT_STATE_MAX_BYTES as DEFAULT_ROOM_STATE_MAX_BYTES,
};
pub const DEFAULT_ROOM_IDLE_SECS: f64 = plaza_actors::rooms::DEFAULT_IDLE.as_secs() as f64;
pub const DEFAULT_ROOM_HTTP_MEMBER_TTL_SECS: f64 = plaza_actors::rooms::DEFAULT_HTTP_MEMBER_TTL.as_secs() as f64;
/// Shard limits (named in `plaza_actors::shards`, where the shards enforce them).
pub use plaza_actors::shards::{
    DEFAULT_INPUTS_PER_SEC as DEFAULT_SHARD_INPUTS_PER_SEC, DEFAULT_INPUT_MAX_BYTES as DEFAULT_SHARD_INPUT_MAX_BYTES,
    DEFAULT_MAX_PLAYERS as DEFAULT_SHARD_MAX_PLAYERS, DEFAULT_MAX_SHARDS as DEFAULT_SHARD_MAX,
    DEFAULT_MAX_SUBSCRIBERS as DEFAULT_SHARD_MAX_SUBSCRIBERS, MAX_TICK_HZ as DEFAULT_SHARD_MAX_TICK_HZ,
};
/// A shard player with no subscription leaves after this much silence.
pub const DEFAULT_SHARD_PLAYER_IDLE_SECS: u64 = 60;
/// Threads that run job handlers (each runs one attempt at a time).
pub const DEFAULT_JOB_WORKERS: usize = 2;
/// First retry delay; each further attempt doubles it (with jitter), capped at an hour.
pub const DEFAULT_JOB_BACKOFF_MS: u64 = 1_000;
/// Cache entries and bytes (keys + values) before least-recently-used entries are evicted.
pub const DEFAULT_CACHE_MAX_ENTRIES: usize = 100_000;
pub const DEFAULT_CACHE_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Largest upload, counted while it streams to disk.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 25 * 1024 * 1024;

#[derive(Debug, Parser)]
#[command(name = "plaza", version, about = "Plaza: a realtime backend in one binary (HTTP + WebSocket on SQLite)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    /// Validate the manifest and exit: 0 when it is valid, 1 with every problem listed.
    Check,
    /// Copy the live database to OUT with SQLite's online backup API (safe while serving).
    Backup { out: PathBuf },
    /// Replace the database with the backup IN (refused while a server serves the database).
    Restore { input: PathBuf },
    /// Print client code for the manifest to stdout: `plaza codegen ts --manifest plaza.json > plaza-types.ts`.
    Codegen {
        #[arg(value_enum)]
        target: crate::codegen::Target,
    },
}

/// Flags; each also reads its `PLAZA_*` variable. Unset ones fall back to the config file,
/// then to the default shown.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML config file with any of the settings below (snake_case keys).
    #[arg(long, env = "PLAZA_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Port for HTTP, WebSocket and SSE; 0 picks a free port. [default: 4321]
    #[arg(long, env = "PLAZA_PORT", global = true)]
    pub port: Option<u16>,
    /// Address to bind. [default: 127.0.0.1]
    #[arg(long, env = "PLAZA_HOST", global = true)]
    pub host: Option<String>,
    /// SQLite database file. [default: plaza.db]
    #[arg(long, env = "PLAZA_DB", global = true)]
    pub db: Option<PathBuf>,
    /// App manifest (JSON or TOML); a missing file means an empty app. [default: plaza.json]
    #[arg(long, env = "PLAZA_MANIFEST", global = true)]
    pub manifest: Option<PathBuf>,
    /// Throwaway database deleted on exit (tests, demos).
    #[arg(long, env = "PLAZA_IN_MEMORY", global = true, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub in_memory: Option<bool>,
    /// Bearer token that grants admin (bulk ops, export/import, rate-limit exemption).
    #[arg(long, env = "PLAZA_ADMIN_TOKEN", global = true, hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Development mode: any CORS origin, any present Origin passes CSRF. [default: false]
    #[arg(long, env = "PLAZA_DEV_MODE", global = true, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub dev_mode: Option<bool>,
    /// Allowed CORS origins, comma separated; `*` only in dev mode. [default: none]
    #[arg(long, env = "PLAZA_CORS_ORIGIN", global = true)]
    pub cors_origin: Option<String>,
    /// Origins accepted by the CSRF check, comma separated. [default: the CORS origins]
    #[arg(long, env = "PLAZA_CSRF_ORIGINS", global = true)]
    pub csrf_origins: Option<String>,
    /// Largest request body in bytes; larger ones get 413. [default: 10485760]
    #[arg(long, env = "PLAZA_MAX_BODY_BYTES", global = true)]
    pub max_body_bytes: Option<usize>,
    /// Requests per client (its session's user, else its IP) per window; 0 turns limiting off. [default: 6000]
    #[arg(long, env = "PLAZA_RATE_LIMIT_MAX", global = true)]
    pub rate_limit_max: Option<u64>,
    /// Rate-limit window in seconds. [default: 60]
    #[arg(long, env = "PLAZA_RATE_LIMIT_WINDOW", global = true)]
    pub rate_limit_window: Option<u64>,
    /// Sessions one client IP may create per minute (guest, magic send/verify, session); 0
    /// turns this limit off. The admin token is exempt. [default: 30]
    #[arg(long, env = "PLAZA_SESSION_RATE_LIMIT", global = true)]
    pub session_rate_limit: Option<u64>,
    /// Reverse proxies whose X-Forwarded-For / Forwarded headers name the client, as comma
    /// separated CIDRs or addresses (e.g. `127.0.0.1,10.0.0.0/8`). [default: none: the peer
    /// address is the client]
    #[arg(long, env = "PLAZA_TRUSTED_PROXIES", global = true)]
    pub trusted_proxies: Option<String>,
    /// Change-log events kept for sync pulls and resumes. [default: 100000]
    #[arg(long, env = "PLAZA_CHANGELOG_RETAIN", global = true)]
    pub changelog_retain: Option<i64>,
    /// `normal` (survives a crash of the process) or `full` (fsync every commit). [default: normal]
    #[arg(long, env = "PLAZA_DURABILITY", global = true)]
    pub durability: Option<String>,
    /// Threads (each with a read connection) that run reads. [default: 4]
    #[arg(long, env = "PLAZA_READ_POOL", global = true)]
    pub read_pool: Option<u32>,
    /// Seconds to drain on SIGTERM before exiting. [default: 10]
    #[arg(long, env = "PLAZA_DRAIN_SECS", global = true)]
    pub drain_secs: Option<u64>,
    /// HTTP worker threads. [default: half the cores, at least 1 — reads, the writer and the
    /// log have threads of their own]
    #[arg(long, env = "PLAZA_WORKERS", global = true)]
    pub workers: Option<usize>,
    /// Session lifetime in seconds, extended while in use. [default: 2592000 (30 days)]
    #[arg(long, env = "PLAZA_SESSION_TTL", global = true)]
    pub session_ttl: Option<u64>,
    /// What an entity without a rule allows: `allow` or `deny`. [default: allow]
    #[arg(long, env = "PLAZA_DEFAULT_POLICY", global = true)]
    pub default_policy: Option<String>,
    /// Mark the session cookie Secure (serve over HTTPS). [default: false]
    #[arg(long, env = "PLAZA_COOKIE_SECURE", global = true, num_args = 0..=1, default_missing_value = "true", value_parser = parse_bool)]
    pub cookie_secure: Option<bool>,
    /// URL that receives `{"email","code"}` for magic sign-in codes; unset: codes are logged.
    #[arg(long, env = "PLAZA_MAGIC_WEBHOOK", global = true)]
    pub magic_webhook: Option<String>,
    /// Frames queued per socket before it is closed with SLOW_CONSUMER. [default: 1024]
    #[arg(long, env = "PLAZA_WS_OUTBOUND_MAX", global = true)]
    pub ws_outbound_max: Option<usize>,
    /// Largest WebSocket frame a client may send, in bytes. [default: 65536]
    #[arg(long, env = "PLAZA_WS_MAX_FRAME_BYTES", global = true)]
    pub ws_max_frame_bytes: Option<usize>,
    /// Live subscriptions per socket or SSE stream. [default: 100]
    #[arg(long, env = "PLAZA_WS_MAX_SUBSCRIPTIONS", global = true)]
    pub ws_max_subscriptions: Option<usize>,
    /// Open sockets and SSE streams per client IP. [default: 1000]
    #[arg(long, env = "PLAZA_WS_MAX_PER_IP", global = true)]
    pub ws_max_per_ip: Option<usize>,
    /// Server ping interval in milliseconds. [default: 10000]
    #[arg(long, env = "PLAZA_WS_HEARTBEAT_MS", global = true)]
    pub ws_heartbeat_ms: Option<u64>,
    /// Milliseconds of client silence before the socket is dropped. [default: 30000]
    #[arg(long, env = "PLAZA_WS_CLIENT_TIMEOUT_MS", global = true)]
    pub ws_client_timeout_ms: Option<u64>,
    /// Most missed events replayed by `subscribe` with `since`. [default: 10000]
    #[arg(long, env = "PLAZA_WS_REPLAY_MAX", global = true)]
    pub ws_replay_max: Option<usize>,
    /// Push op_ids remembered for dedup (survive restarts). [default: 100000]
    #[arg(long, env = "PLAZA_OP_RETAIN", global = true)]
    pub op_retain: Option<i64>,
    /// Operations one batch or transact may carry for a session (admin: 10000). [default: 100]
    #[arg(long, env = "PLAZA_BULK_MAX_OPS_SESSION", global = true)]
    pub bulk_max_ops_session: Option<usize>,
    /// Members per room (the manifest's rooms.max_members wins); beyond: ROOM_FULL. [default: 100]
    #[arg(long, env = "PLAZA_ROOM_MAX_MEMBERS", global = true)]
    pub room_max_members: Option<usize>,
    /// Rooms one WebSocket may be in; beyond: TOO_MANY_ROOMS. [default: 50]
    #[arg(long, env = "PLAZA_ROOM_MAX_PER_CONNECTION", global = true)]
    pub room_max_per_connection: Option<usize>,
    /// Rooms running in this process; beyond, new rooms answer 503 UNAVAILABLE. [default: 10000]
    #[arg(long, env = "PLAZA_ROOM_MAX_ROOMS", global = true)]
    pub room_max_rooms: Option<usize>,
    /// Recent events each room keeps for `join` with `since`. [default: 256]
    #[arg(long, env = "PLAZA_ROOM_BUFFER", global = true)]
    pub room_buffer: Option<usize>,
    /// Seconds a room without members lives on before it stops (fractions allowed). [default: 120]
    #[arg(long, env = "PLAZA_ROOM_IDLE_SECS", global = true)]
    pub room_idle_secs: Option<f64>,
    /// Seconds an HTTP-only room member stays without joining again. [default: 60]
    #[arg(long, env = "PLAZA_ROOM_HTTP_MEMBER_TTL", global = true)]
    pub room_http_member_ttl: Option<f64>,
    /// Largest room state document in bytes; beyond: STATE_TOO_LARGE. [default: 65536]
    #[arg(long, env = "PLAZA_ROOM_STATE_MAX_BYTES", global = true)]
    pub room_state_max_bytes: Option<usize>,
    /// Largest room event (the room_event frame, or a presence value) in bytes. [default: 16384]
    #[arg(long, env = "PLAZA_ROOM_EVENT_MAX_BYTES", global = true)]
    pub room_event_max_bytes: Option<usize>,
    /// Events (broadcasts, presence, state patches) per second per member; 0 turns it off. [default: 20]
    #[arg(long, env = "PLAZA_ROOM_EVENTS_PER_SEC", global = true)]
    pub room_events_per_sec: Option<u32>,
    /// Threads the rooms run on. [default: half the cores, at least 1]
    #[arg(long, env = "PLAZA_ROOM_THREADS", global = true)]
    pub room_threads: Option<usize>,
    /// Shards running at once in this process. [default: 1000]
    #[arg(long, env = "PLAZA_SHARD_MAX", global = true)]
    pub shard_max: Option<usize>,
    /// Players in one shard. [default: 100]
    #[arg(long, env = "PLAZA_SHARD_MAX_PLAYERS", global = true)]
    pub shard_max_players: Option<usize>,
    /// Live subscribers (WebSocket or SSE) of one shard. [default: 1000]
    #[arg(long, env = "PLAZA_SHARD_MAX_SUBSCRIBERS", global = true)]
    pub shard_max_subscribers: Option<usize>,
    /// Largest shard input, as JSON, in bytes. [default: 4096]
    #[arg(long, env = "PLAZA_SHARD_INPUT_MAX_BYTES", global = true)]
    pub shard_input_max_bytes: Option<usize>,
    /// Inputs per second one player may send to one shard (burst: one second's worth). [default: 60]
    #[arg(long, env = "PLAZA_SHARD_INPUTS_PER_SEC", global = true)]
    pub shard_inputs_per_sec: Option<u32>,
    /// Fastest tick a shard may ask for, 1 to 120. [default: 120]
    #[arg(long, env = "PLAZA_SHARD_MAX_TICK_HZ", global = true)]
    pub shard_max_tick_hz: Option<u32>,
    /// Threads (arbiters) that run shards, apart from the ones serving sockets. [default: one per core]
    #[arg(long, env = "PLAZA_SHARD_THREADS", global = true)]
    pub shard_threads: Option<usize>,
    /// How shard threads are scheduled: realtime (SCHED_FIFO), high (nice -10) or normal; each steps down when the OS refuses it. [default: realtime]
    #[arg(long, env = "PLAZA_SHARD_PRIORITY", global = true)]
    pub shard_priority: Option<String>,
    /// Seconds after which a shard player with no subscription that sent nothing leaves. [default: 60]
    #[arg(long, env = "PLAZA_SHARD_PLAYER_IDLE_SECS", global = true)]
    pub shard_player_idle_secs: Option<u64>,
    /// Threads that run job handlers. [default: 2]
    #[arg(long, env = "PLAZA_JOB_WORKERS", global = true)]
    pub job_workers: Option<usize>,
    /// First retry delay of a failed job in ms; doubles per attempt with jitter, capped at 1 h. [default: 1000]
    #[arg(long, env = "PLAZA_JOB_BACKOFF_MS", global = true)]
    pub job_backoff_ms: Option<u64>,
    /// Hosts the `webhook` job may POST to, comma separated (`host` or `host:port`). [default: none]
    #[arg(long, env = "PLAZA_WEBHOOK_ALLOW", global = true)]
    pub webhook_allow: Option<String>,
    /// Cache entries kept before the least recently used are evicted. [default: 100000]
    #[arg(long, env = "PLAZA_CACHE_MAX_ENTRIES", global = true)]
    pub cache_max_entries: Option<usize>,
    /// Cache bytes (keys + values) kept before the least recently used are evicted. [default: 67108864]
    #[arg(long, env = "PLAZA_CACHE_MAX_BYTES", global = true)]
    pub cache_max_bytes: Option<usize>,
    /// Directory for uploaded files. [default: `<database>.files` beside the database]
    #[arg(long, env = "PLAZA_FILES_DIR", global = true)]
    pub files_dir: Option<PathBuf>,
    /// Largest upload in bytes; larger ones get 413 while streaming. [default: 26214400]
    #[arg(long, env = "PLAZA_MAX_UPLOAD_BYTES", global = true)]
    pub max_upload_bytes: Option<u64>,
    #[command(flatten)]
    pub accounts: accounts::AccountsArgs,
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("expected true/false or 1/0, got '{s}'")),
    }
}

/// The settings every part of the server reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub port: u16,
    pub host: String,
    pub db: PathBuf,
    pub manifest: PathBuf,
    pub in_memory: bool,
    pub admin_token: Option<String>,
    pub dev_mode: bool,
    pub cors_origins: Vec<String>,
    pub csrf_origins: Vec<String>,
    pub max_body_bytes: usize,
    pub rate_limit_max: u64,
    pub rate_limit_window_secs: u64,
    pub session_rate_limit: u64,
    #[serde(deserialize_with = "nets")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub changelog_retain: i64,
    pub durability: String,
    pub read_pool: u32,
    pub drain_secs: u64,
    pub workers: Option<usize>,
    pub session_ttl_secs: u64,
    pub default_policy: String,
    pub cookie_secure: bool,
    pub magic_webhook: Option<String>,
    pub ws_outbound_max: usize,
    pub ws_max_frame_bytes: usize,
    pub ws_max_subscriptions: usize,
    pub ws_max_per_ip: usize,
    pub ws_heartbeat_ms: u64,
    pub ws_client_timeout_ms: u64,
    pub ws_replay_max: usize,
    pub op_retain: i64,
    pub bulk_max_ops_session: usize,
    pub room_max_members: usize,
    pub room_max_per_connection: usize,
    pub room_max_rooms: usize,
    pub room_buffer: usize,
    pub room_idle_secs: f64,
    pub room_http_member_ttl_secs: f64,
    pub room_state_max_bytes: usize,
    pub room_event_max_bytes: usize,
    pub room_events_per_sec: u32,
    pub room_threads: Option<usize>,
    pub shard_max: usize,
    pub shard_max_players: usize,
    pub shard_max_subscribers: usize,
    pub shard_input_max_bytes: usize,
    pub shard_inputs_per_sec: u32,
    pub shard_max_tick_hz: u32,
    pub shard_threads: Option<usize>,
    pub shard_priority: String,
    pub shard_player_idle_secs: u64,
    pub job_workers: usize,
    pub job_backoff_ms: u64,
    pub webhook_allow: Vec<String>,
    pub cache_max_entries: usize,
    pub cache_max_bytes: usize,
    /// `None`: `<db>.files` beside the database (a scratch dir with `--in-memory`).
    pub files_dir: Option<PathBuf>,
    pub max_upload_bytes: u64,
    /// The `[accounts]` table.
    pub accounts: accounts::AccountsConfig,
    /// `[[oauth]]` sign-in providers.
    pub oauth: Vec<accounts::OAuthProviderConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: DEFAULT_PORT,
            host: "127.0.0.1".into(),
            db: DEFAULT_DB.into(),
            manifest: DEFAULT_MANIFEST.into(),
            in_memory: false,
            admin_token: None,
            dev_mode: false,
            cors_origins: Vec::new(),
            csrf_origins: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            rate_limit_max: DEFAULT_RATE_LIMIT_MAX,
            rate_limit_window_secs: DEFAULT_RATE_LIMIT_WINDOW_SECS,
            session_rate_limit: DEFAULT_SESSION_RATE_LIMIT,
            trusted_proxies: Vec::new(),
            changelog_retain: DEFAULT_CHANGELOG_RETAIN,
            durability: "normal".into(),
            read_pool: DEFAULT_READ_POOL,
            drain_secs: DEFAULT_DRAIN_SECS,
            workers: None,
            session_ttl_secs: DEFAULT_SESSION_TTL_SECS,
            default_policy: "allow".into(),
            cookie_secure: false,
            magic_webhook: None,
            ws_outbound_max: DEFAULT_WS_OUTBOUND_MAX,
            ws_max_frame_bytes: DEFAULT_WS_MAX_FRAME_BYTES,
            ws_max_subscriptions: DEFAULT_WS_MAX_SUBSCRIPTIONS,
            ws_max_per_ip: DEFAULT_WS_MAX_PER_IP,
            ws_heartbeat_ms: HEARTBEAT_INTERVAL_MS,
            ws_client_timeout_ms: CLIENT_TIMEOUT_MS,
            ws_replay_max: DEFAULT_WS_REPLAY_MAX,
            op_retain: DEFAULT_OP_RETAIN,
            bulk_max_ops_session: DEFAULT_BULK_MAX_OPS_SESSION,
            room_max_members: DEFAULT_ROOM_MAX_MEMBERS,
            room_max_per_connection: DEFAULT_ROOM_MAX_PER_CONNECTION,
            room_max_rooms: DEFAULT_ROOM_MAX_ROOMS,
            room_buffer: DEFAULT_ROOM_BUFFER,
            room_idle_secs: DEFAULT_ROOM_IDLE_SECS,
            room_http_member_ttl_secs: DEFAULT_ROOM_HTTP_MEMBER_TTL_SECS,
            room_state_max_bytes: DEFAULT_ROOM_STATE_MAX_BYTES,
            room_event_max_bytes: DEFAULT_ROOM_EVENT_MAX_BYTES,
            room_events_per_sec: DEFAULT_ROOM_EVENTS_PER_SEC,
            room_threads: None,
            shard_max: DEFAULT_SHARD_MAX,
            shard_max_players: DEFAULT_SHARD_MAX_PLAYERS,
            shard_max_subscribers: DEFAULT_SHARD_MAX_SUBSCRIBERS,
            shard_input_max_bytes: DEFAULT_SHARD_INPUT_MAX_BYTES,
            shard_inputs_per_sec: DEFAULT_SHARD_INPUTS_PER_SEC,
            shard_max_tick_hz: DEFAULT_SHARD_MAX_TICK_HZ,
            shard_threads: None,
            shard_priority: "realtime".into(),
            shard_player_idle_secs: DEFAULT_SHARD_PLAYER_IDLE_SECS,
            job_workers: DEFAULT_JOB_WORKERS,
            job_backoff_ms: DEFAULT_JOB_BACKOFF_MS,
            webhook_allow: Vec::new(),
            cache_max_entries: DEFAULT_CACHE_MAX_ENTRIES,
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            files_dir: None,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            accounts: accounts::AccountsConfig::default(),
            oauth: Vec::new(),
        }
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// The config file's `trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]`, read like the variable.
fn nets<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?.iter().map(|n| parse_net(n).map_err(serde::de::Error::custom)).collect()
}

/// A CIDR, or a bare address meaning just that host.
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("PLAZA_TRUSTED_PROXIES: '{s}' is not an address or CIDR"))
}

impl Config {
    /// Defaults, then the config file, then env and flags (clap has already merged those two).
    pub fn from_args(args: &ServeArgs) -> Result<Config, String> {
        let mut c = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Config::default(),
        };
        macro_rules! layer {
            ($($field:ident <- $arg:ident),*) => { $( if let Some(v) = args.$arg.clone() { c.$field = v; } )* };
        }
        layer!(port <- port, host <- host, db <- db, manifest <- manifest, in_memory <- in_memory,
               dev_mode <- dev_mode, max_body_bytes <- max_body_bytes, rate_limit_max <- rate_limit_max,
               rate_limit_window_secs <- rate_limit_window, session_rate_limit <- session_rate_limit,
               changelog_retain <- changelog_retain,
               durability <- durability, read_pool <- read_pool, drain_secs <- drain_secs,
               session_ttl_secs <- session_ttl, default_policy <- default_policy, cookie_secure <- cookie_secure,
               ws_outbound_max <- ws_outbound_max, ws_max_frame_bytes <- ws_max_frame_bytes,
               ws_max_subscriptions <- ws_max_subscriptions, ws_max_per_ip <- ws_max_per_ip,
               ws_heartbeat_ms <- ws_heartbeat_ms, ws_client_timeout_ms <- ws_client_timeout_ms,
               ws_replay_max <- ws_replay_max, op_retain <- op_retain,
               bulk_max_ops_session <- bulk_max_ops_session, room_max_members <- room_max_members,
               room_max_per_connection <- room_max_per_connection, room_max_rooms <- room_max_rooms,
               room_buffer <- room_buffer, room_idle_secs <- room_idle_secs,
               room_http_member_ttl_secs <- room_http_member_ttl, room_state_max_bytes <- room_state_max_bytes,
               room_event_max_bytes <- room_event_max_bytes, room_events_per_sec <- room_events_per_sec);
        if args.room_threads.is_some() {
            c.room_threads = args.room_threads;
        }
        layer!(shard_max <- shard_max, shard_max_players <- shard_max_players,
               shard_max_subscribers <- shard_max_subscribers, shard_input_max_bytes <- shard_input_max_bytes,
               shard_inputs_per_sec <- shard_inputs_per_sec, shard_max_tick_hz <- shard_max_tick_hz,
               shard_player_idle_secs <- shard_player_idle_secs);
        if args.shard_threads.is_some() {
            c.shard_threads = args.shard_threads;
        }
        if let Some(p) = &args.shard_priority {
            c.shard_priority = p.clone();
        }
        layer!(job_workers <- job_workers,
               job_backoff_ms <- job_backoff_ms, cache_max_entries <- cache_max_entries,
               cache_max_bytes <- cache_max_bytes, max_upload_bytes <- max_upload_bytes);
        if args.files_dir.is_some() {
            c.files_dir = args.files_dir.clone();
        }
        if let Some(hosts) = &args.webhook_allow {
            c.webhook_allow = split_list(hosts);
        }
        if args.magic_webhook.is_some() {
            c.magic_webhook = args.magic_webhook.clone().filter(|u| !u.is_empty());
        }
        if args.admin_token.is_some() {
            c.admin_token = args.admin_token.clone().filter(|t| !t.is_empty());
        }
        if args.workers.is_some() {
            c.workers = args.workers;
        }
        if let Some(o) = &args.cors_origin {
            c.cors_origins = split_list(o);
        }
        if let Some(o) = &args.csrf_origins {
            c.csrf_origins = split_list(o);
        }
        if let Some(p) = &args.trusted_proxies {
            c.trusted_proxies = split_list(p).iter().map(|n| parse_net(n)).collect::<Result<_, _>>()?;
        }
        c.accounts.layer(&args.accounts)?;
        c.validate()?;
        Ok(c)
    }

    /// Settings that would make a running server unsafe or useless refuse to start.
    pub fn validate(&self) -> Result<(), String> {
        if !self.dev_mode && self.cors_origins.iter().any(|o| o == "*") {
            return Err("PLAZA_CORS_ORIGIN='*' is only allowed with PLAZA_DEV_MODE=1; list your origins".into());
        }
        if self.changelog_retain < 1 {
            return Err("PLAZA_CHANGELOG_RETAIN must be at least 1".into());
        }
        if self.rate_limit_max > 0 && self.rate_limit_window_secs == 0 {
            return Err("PLAZA_RATE_LIMIT_WINDOW must be at least 1 second".into());
        }
        if !matches!(self.default_policy.as_str(), "allow" | "deny") {
            return Err(format!("PLAZA_DEFAULT_POLICY must be 'allow' or 'deny', got '{}'", self.default_policy));
        }
        if self.ws_outbound_max == 0 || self.ws_heartbeat_ms == 0 || self.ws_client_timeout_ms <= self.ws_heartbeat_ms {
            return Err("PLAZA_WS_OUTBOUND_MAX must be positive and PLAZA_WS_CLIENT_TIMEOUT_MS longer than PLAZA_WS_HEARTBEAT_MS".into());
        }
        if self.session_ttl_secs == 0 {
            return Err("PLAZA_SESSION_TTL must be at least 1 second".into());
        }
        if self.shard_max_tick_hz == 0 || self.shard_max_tick_hz > plaza_actors::shards::MAX_TICK_HZ {
            return Err(format!("PLAZA_SHARD_MAX_TICK_HZ must be between 1 and {}", plaza_actors::shards::MAX_TICK_HZ));
        }
        if plaza_actors::shards::clock::ShardPriority::parse(&self.shard_priority).is_none() {
            return Err(format!("PLAZA_SHARD_PRIORITY must be 'realtime', 'high' or 'normal', got '{}'", self.shard_priority));
        }
        if self.shard_inputs_per_sec == 0 || self.shard_threads == Some(0) {
            return Err("PLAZA_SHARD_INPUTS_PER_SEC and PLAZA_SHARD_THREADS must be at least 1".into());
        }
        if !matches!(self.durability.as_str(), "normal" | "full") {
            return Err(format!("PLAZA_DURABILITY must be 'normal' or 'full', got '{}'", self.durability));
        }
        if self.job_workers == 0 || self.job_workers > 256 {
            return Err("PLAZA_JOB_WORKERS must be between 1 and 256".into());
        }
        if self.cache_max_entries == 0 || self.cache_max_bytes == 0 {
            return Err("PLAZA_CACHE_MAX_ENTRIES and PLAZA_CACHE_MAX_BYTES must be positive".into());
        }
        if self.max_upload_bytes == 0 {
            return Err("PLAZA_MAX_UPLOAD_BYTES must be positive".into());
        }
        self.validate_rooms()?;
        self.accounts.validate()
    }

    fn validate_rooms(&self) -> Result<(), String> {
        for (name, value) in [
            ("PLAZA_ROOM_MAX_MEMBERS", self.room_max_members),
            ("PLAZA_ROOM_MAX_PER_CONNECTION", self.room_max_per_connection),
            ("PLAZA_ROOM_MAX_ROOMS", self.room_max_rooms),
            ("PLAZA_ROOM_BUFFER", self.room_buffer),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        for (name, secs) in [("PLAZA_ROOM_IDLE_SECS", self.room_idle_secs), ("PLAZA_ROOM_HTTP_MEMBER_TTL", self.room_http_member_ttl_secs)] {
            if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
                return Err(format!("{name} must be a positive number of seconds, got {secs}"));
            }
        }
        if self.room_state_max_bytes < 2 || self.room_event_max_bytes < 64 {
            return Err("PLAZA_ROOM_STATE_MAX_BYTES must be at least 2 and PLAZA_ROOM_EVENT_MAX_BYTES at least 64".into());
        }
        Ok(())
    }

    /// Origins a cookie/anonymous state-changing request may come from.
    pub fn csrf_allows(&self, origin: &str) -> bool {
        let list = if self.csrf_origins.is_empty() { &self.cors_origins } else { &self.csrf_origins };
        self.dev_mode || list.iter().any(|o| o == origin || o == "*")
    }

    /// HTTP workers: measured on 2 cores, one worker beside the read, write and log threads
    /// serves more than two (61k vs 51k gets/s, 30k vs 25k inserts/s).
    pub fn http_workers(&self) -> usize {
        self.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() / 2)).max(1)
    }

    /// The room settings this config asks for.
    pub fn room_settings(&self) -> plaza_actors::rooms::RoomSettings {
        use std::time::Duration;
        plaza_actors::rooms::RoomSettings {
            max_members: self.room_max_members,
            max_per_connection: self.room_max_per_connection,
            max_rooms: self.room_max_rooms,
            buffer: self.room_buffer,
            idle: Duration::from_secs_f64(self.room_idle_secs),
            http_member_ttl: Duration::from_secs_f64(self.room_http_member_ttl_secs),
            state_max_bytes: self.room_state_max_bytes,
            event_max_bytes: self.room_event_max_bytes,
            events_per_sec: self.room_events_per_sec,
            threads: self.room_threads.unwrap_or_else(|| self.http_workers()).max(1),
        }
    }

    /// The shard limits the shards enforce.
    pub fn shard_limits(&self) -> plaza_actors::shards::ShardLimits {
        plaza_actors::shards::ShardLimits {
            max_shards: self.shard_max,
            max_players: self.shard_max_players,
            max_subscribers: self.shard_max_subscribers,
            input_max_bytes: self.shard_input_max_bytes,
            inputs_per_sec: self.shard_inputs_per_sec,
            max_tick_hz: self.shard_max_tick_hz,
            player_idle: std::time::Duration::from_secs(self.shard_player_idle_secs),
            threads: self.shard_threads.unwrap_or(0),
            priority: plaza_actors::shards::clock::ShardPriority::parse(&self.shard_priority)
                .unwrap_or(plaza_actors::shards::clock::ShardPriority::Realtime),
            ..Default::default()
        }
    }

    /// A config for tests: in-memory, dev mode off, no rate limits unless a test sets one.
    pub fn for_tests() -> Config {
        Config {
            in_memory: true,
            rate_limit_max: 0,
            session_rate_limit: 0,
            accounts: accounts::AccountsConfig { login_rate_limit: 0, ..accounts::AccountsConfig::for_tests() },
            ..Config::default()
        }
    }
}
