//! Jobs: retries with growing backoff against a real HTTP endpoint, dead letters and retry,
//! panics and timeouts failing one attempt, who may enqueue, cron on an injected clock, and a
//! job interrupted by SIGKILL running again after a restart.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{test, web, App, HttpResponse};
use common::*;
use plaza_actors::clock::ManualClock;
use plaza_actors::jobs::scheduler::Check;
use plaza_actors::jobs::Registry;
use plaza_actors::AppManifest;
use serde_json::{json, Value};

/// A safety net against a hung test, not a synchronisation.
const PATIENCE: Duration = Duration::from_secs(20);
const BACKOFF_MS: u64 = 100;

const MANIFEST: &str = r#"{"jobs": [{"name": "hello", "public": true}]}"#;

fn registry() -> Registry {
    let mut r = Registry::default();
    r.register("hello", |_: &plaza_actors::jobs::JobContext, p: &Value| Ok(json!({"echo": p})));
    r.register("always_fails", |_: &plaza_actors::jobs::JobContext, _: &Value| Err("nope".to_string()));
    r.register("panics", |_: &plaza_actors::jobs::JobContext, _: &Value| -> Result<Value, String> { panic!("boom") });
    r.register("slow", |_: &plaza_actors::jobs::JobContext, _: &Value| {
        std::thread::sleep(Duration::from_millis(300));
        Ok(Value::Null)
    });
    r
}

fn job_config() -> plaza::config::Config {
    plaza::config::Config { job_backoff_ms: BACKOFF_MS, webhook_allow: vec!["127.0.0.1".into()], ..config() }
}

async fn app() -> impl Service<actix_http::Request, Response = ServiceResponse<impl actix_web::body::MessageBody>, Error = actix_web::Error> {
    let extras = plaza::Extras { jobs: Some(registry()), ..Default::default() };
    let state = plaza::build_state_extras(job_config(), AppManifest::from_json(MANIFEST).unwrap(), extras).unwrap();
    test::init_service(App::new().configure(plaza::configure(state))).await
}

/// Polls the job until `done` holds (each look is a request; the patience only bounds a hang).
async fn wait_for<S, B>(app: &S, id: &str, done: impl Fn(&Value) -> bool) -> Value
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, job) = call(app, admin(get(&format!("/api/jobs/{id}")))).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job never got there: {job}");
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn enqueue<S, B>(app: &S, body: Value) -> String
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let (status, resp) = call(app, post("/api/jobs", body)).await;
    assert_eq!(status, StatusCode::CREATED, "{resp}");
    resp["id"].as_str().unwrap().to_string()
}

#[actix_rt::test]
async fn webhook_fails_twice_then_succeeds_with_growing_delays() {
    let hits: Arc<Mutex<Vec<(Instant, Value)>>> = Arc::default();
    let seen = hits.clone();
    let hook = actix_test::start(move || {
        let seen = seen.clone();
        App::new().route(
            "/hook",
            web::post().to(move |body: web::Json<Value>| {
                let seen = seen.clone();
                async move {
                    let mut hits = seen.lock().unwrap();
                    hits.push((Instant::now(), body.into_inner()));
                    if hits.len() <= 2 {
                        HttpResponse::InternalServerError().body("not yet")
                    } else {
                        HttpResponse::Ok().finish()
                    }
                }
            }),
        )
    });
    let app = app().await;
    let id = enqueue(&app, json!({"name": "webhook", "payload": {"url": hook.url("/hook"), "body": {"order": 7}}})).await;
    let job = wait_for(&app, &id, |j| j["status"] == "succeeded").await;
    assert_eq!(job["attempts"], 3);
    let errors = job["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert!(errors[0]["error"].as_str().unwrap().contains("500"), "{job}");
    assert_eq!((errors[0]["attempt"].as_u64(), errors[1]["attempt"].as_u64()), (Some(1), Some(2)));
    assert!(job["last_error"].as_str().unwrap().contains("not yet"));
    assert_eq!(job["result"], json!({"status": 200}));

    let hits = hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 3);
    assert!(hits.iter().all(|(_, body)| *body == json!({"order": 7})));
    // Equal jitter: the first retry waits base/2..base, the second base..2*base.
    let (gap1, gap2) = (hits[1].0 - hits[0].0, hits[2].0 - hits[1].0);
    assert!(gap1 >= Duration::from_millis(BACKOFF_MS / 2), "{gap1:?}");
    assert!(gap2 >= Duration::from_millis(BACKOFF_MS), "{gap2:?}");

    // A host outside PLAZA_WEBHOOK_ALLOW fails without a call.
    let id = enqueue(&app, json!({"name": "webhook", "max_attempts": 1, "payload": {"url": "http://example.com/x", "body": {}}})).await;
    let job = wait_for(&app, &id, |j| j["status"] == "dead").await;
    assert!(job["last_error"].as_str().unwrap().contains("PLAZA_WEBHOOK_ALLOW"), "{job}");

    let (_, metrics) = call(&app, get("/metrics")).await;
    assert!(metrics["jobs"]["succeeded"].as_u64().unwrap() >= 1 && metrics["jobs"]["failed_attempts"].as_u64().unwrap() >= 3, "{metrics}");
}

#[actix_rt::test]
async fn failing_jobs_go_dead_and_retry_brings_them_back() {
    let app = app().await;
    let id = enqueue(&app, json!({"name": "always_fails", "max_attempts": 3})).await;
    let job = wait_for(&app, &id, |j| j["status"] == "dead").await;
    assert_eq!((job["attempts"].as_u64(), job["errors"].as_array().unwrap().len()), (Some(3), 3));
    assert_eq!(job["last_error"], "nope");
    let (_, dead) = call(&app, admin(get("/api/jobs?status=dead"))).await;
    assert!(dead["jobs"].as_array().unwrap().iter().any(|j| j["id"] == id.as_str()), "{dead}");

    // Retry: pending again with attempts reset, and dead again after three more attempts.
    let (status, retried) = call(&app, post(&format!("/api/jobs/{id}/retry"), json!({}))).await;
    assert_eq!((status, retried["status"].as_str(), retried["attempts"].as_u64()), (StatusCode::OK, Some("pending"), Some(0)));
    let job = wait_for(&app, &id, |j| j["status"] == "dead").await;
    assert_eq!((job["attempts"].as_u64(), job["errors"].as_array().unwrap().len()), (Some(3), 6));

    // A panic and a timeout each fail only their attempt; the workers carry on.
    let panicky = enqueue(&app, json!({"name": "panics", "max_attempts": 1})).await;
    let slow = enqueue(&app, json!({"name": "slow", "max_attempts": 1, "timeout_ms": 50})).await;
    let unknown = enqueue(&app, json!({"name": "no_such_handler", "max_attempts": 1})).await;
    let job = wait_for(&app, &panicky, |j| j["status"] == "dead").await;
    assert!(job["last_error"].as_str().unwrap().contains("panicked: boom"), "{job}");
    let job = wait_for(&app, &slow, |j| j["status"] == "dead").await;
    assert!(job["last_error"].as_str().unwrap().contains("timed out after 50 ms"), "{job}");
    let job = wait_for(&app, &unknown, |j| j["status"] == "dead").await;
    assert!(job["last_error"].as_str().unwrap().contains("no handler"), "{job}");
    let ok = enqueue(&app, json!({"name": "hello", "payload": 1})).await;
    assert_eq!(wait_for(&app, &ok, |j| j["status"] == "succeeded").await["result"], json!({"echo": 1}));

    // Only dead jobs can be retried; unknown ids are 404; bad input is 400.
    assert_eq!(call(&app, post(&format!("/api/jobs/{ok}/retry"), json!({}))).await.0, StatusCode::CONFLICT);
    assert_eq!(call(&app, post("/api/jobs/nope/retry", json!({}))).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&app, post("/api/jobs", json!({"name": "hello", "max_attempts": 0}))).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&app, post("/api/jobs", json!({"name": "hello", "run_at": "tomorrow"}))).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&app, admin(get("/api/jobs?status=weird"))).await.0, StatusCode::BAD_REQUEST);
}

#[actix_rt::test]
async fn sessions_enqueue_public_jobs_and_see_only_their_own() {
    let app = app().await;
    let token = |body: &Value| body["token"].as_str().unwrap().to_string();
    let alice = token(&call(&app, post("/api/auth/session", json!({"user_id": "alice"}))).await.1);
    let bob = token(&call(&app, post("/api/auth/session", json!({"user_id": "bob"}))).await.1);
    let as_user = |t: &str, req: test::TestRequest| req.insert_header(("Authorization", format!("Bearer {t}")));

    let (status, body) = call(&app, as_user(&alice, test::TestRequest::post().uri("/api/jobs").set_json(json!({"name": "hello"})))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let (status, body) = call(&app, as_user(&alice, test::TestRequest::post().uri("/api/jobs").set_json(json!({"name": "webhook"})))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
    let anon = test::TestRequest::post().uri("/api/jobs").insert_header(("Origin", ORIGIN)).set_json(json!({"name": "hello"}));
    assert_eq!(call(&app, anon).await.0, StatusCode::FORBIDDEN);

    assert_eq!(call(&app, as_user(&alice, get(&format!("/api/jobs/{id}")))).await.0, StatusCode::OK);
    assert_eq!(call(&app, as_user(&bob, get(&format!("/api/jobs/{id}")))).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&app, as_user(&alice, get("/api/jobs"))).await.0, StatusCode::FORBIDDEN);
}

#[actix_rt::test]
async fn priorities_and_run_at_order_the_queue() {
    // One worker and a clock the test moves: a job for later waits however high its priority;
    // among due jobs the higher priority runs first, then the earlier arrival.
    let order: Arc<Mutex<Vec<i64>>> = Arc::default();
    let seen = order.clone();
    let mut r = registry();
    r.register("record", move |_: &plaza_actors::jobs::JobContext, p: &Value| {
        seen.lock().unwrap().push(p.as_i64().unwrap_or(-1));
        Ok(Value::Null)
    });
    let now = chrono::Utc::now().timestamp_millis();
    let clock = ManualClock::new(now);
    let extras = plaza::Extras { jobs: Some(r), clock: Some(clock.clone()), ..Default::default() };
    let config = plaza::config::Config { job_workers: 1, ..job_config() };
    let state = plaza::build_state_extras(config, AppManifest::from_json(MANIFEST).unwrap(), extras).unwrap();
    let app = test::init_service(App::new().configure(plaza::configure(state.clone()))).await;
    // Occupy the only worker so the next jobs queue up together.
    let blocker = enqueue(&app, json!({"name": "slow"})).await;
    let hour_later = now + 3_600_000;
    let delayed = enqueue(&app, json!({"name": "record", "payload": 4, "priority": 100, "run_at": hour_later})).await;
    let mut ids = Vec::new();
    for (p, prio) in [(1, 0), (2, 5), (3, -1), (5, 5)] {
        ids.push(enqueue(&app, json!({"name": "record", "payload": p, "priority": prio})).await);
    }
    wait_for(&app, &blocker, |j| j["status"] == "succeeded").await;
    for id in &ids {
        wait_for(&app, id, |j| j["status"] == "succeeded").await;
    }
    assert_eq!(*order.lock().unwrap(), vec![2, 5, 1, 3]);
    let (_, job) = call(&app, admin(get(&format!("/api/jobs/{delayed}")))).await;
    assert_eq!(job["status"], "pending");

    clock.advance(3_600_000);
    state.plaza.jobs.send(plaza_actors::jobs::queue::Wake).await.unwrap();
    let job = wait_for(&app, &delayed, |j| j["status"] == "succeeded").await;
    assert_eq!(*order.lock().unwrap(), vec![2, 5, 1, 3, 4]);
    let started = chrono::DateTime::parse_from_rfc3339(job["started_at"].as_str().unwrap()).unwrap();
    assert_eq!(started.timestamp_millis(), hour_later, "{job}");
}

/// 2026-01-01T10:00:00Z
const T0: i64 = 1_767_261_600_000;
const MIN: i64 = 60_000;

#[actix_rt::test]
async fn cron_fires_on_time_once_per_due_time_and_once_after_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let manifest = r#"{"jobs": [{"name": "hello", "cron": "0 */5 * * * *", "payload": {"from": "cron"}}]}"#;
    let build = |clock: Arc<ManualClock>| {
        let config = plaza::config::Config { in_memory: false, db: dir.path().join("plaza.db"), ..job_config() };
        let extras = plaza::Extras { jobs: Some(registry()), clock: Some(clock), ..Default::default() };
        plaza::build_state_extras(config, AppManifest::from_json(manifest).unwrap(), extras).unwrap()
    };
    let state = build(clock.clone());
    let fired = |list: Vec<(String, i64)>| list.into_iter().filter(|(n, _)| n == "hello").map(|(_, t)| t).collect::<Vec<_>>();
    let check = |state: &web::Data<plaza::AppState>| state.plaza.scheduler.send(Check);

    // First start: counting begins now; nothing fires until 10:05:00.
    assert_eq!(fired(check(&state).await.unwrap()), Vec::<i64>::new());
    clock.set(T0 + 5 * MIN - 1_000);
    assert_eq!(fired(check(&state).await.unwrap()), Vec::<i64>::new());
    clock.set(T0 + 5 * MIN);
    assert_eq!(fired(check(&state).await.unwrap()), vec![T0 + 5 * MIN]);
    assert_eq!(fired(check(&state).await.unwrap()), Vec::<i64>::new());
    // 10:10 and 10:15 both passed: one fire, for 10:15.
    clock.set(T0 + 17 * MIN + 30_000);
    assert_eq!(fired(check(&state).await.unwrap()), vec![T0 + 15 * MIN]);
    assert_eq!(fired(check(&state).await.unwrap()), Vec::<i64>::new());

    // "Down" from 10:17:30 to 10:31: a new process on the same database fires 10:30 once, at
    // start, and not again.
    clock.set(T0 + 31 * MIN);
    let restarted = build(clock.clone());
    assert_eq!(fired(check(&restarted).await.unwrap()), Vec::<i64>::new());
    let app = test::init_service(App::new().configure(plaza::configure(restarted.clone()))).await;
    let (_, list) = call(&app, admin(get("/api/jobs?limit=1000"))).await;
    let mut runs: Vec<&str> = list["jobs"].as_array().unwrap().iter().filter(|j| j["name"] == "hello").map(|j| j["run_at"].as_str().unwrap()).collect();
    runs.sort();
    // Each job is due when it was enqueued: at 10:05, at the 10:17:30 check, at the restart.
    assert_eq!(runs, vec!["2026-01-01T10:05:00.000Z", "2026-01-01T10:17:30.000Z", "2026-01-01T10:31:00.000Z"]);
    assert!(list["jobs"].as_array().unwrap().iter().filter(|j| j["name"] == "hello").all(|j| j["payload"] == json!({"from": "cron"})));
}

// ------------------------------------------------------------------ process level

const PROCESS_ADMIN: &str = "jobs-admin";

/// The built `plaza` on a database in `dir`, allowed to call webhooks on 127.0.0.1.
fn start(dir: &std::path::Path) -> common::process::PlazaProcess {
    up(serve(&dir.join("plaza.db"), PROCESS_ADMIN).env("PLAZA_WEBHOOK_ALLOW", "127.0.0.1"))
}

async fn admin_call(method: &str, url: String, body: Option<Value>) -> (u16, Value) {
    common::remote::send(&awc::Client::default(), Some(PROCESS_ADMIN), method, &url, body.as_ref()).await
}

/// Accepts one connection on the hook listener (in a thread: it blocks) and hands it back.
async fn accept(listener: &Arc<TcpListener>) -> std::net::TcpStream {
    let listener = listener.clone();
    web::block(move || listener.accept().map(|(s, _)| s)).await.unwrap().unwrap()
}

#[actix_rt::test]
async fn a_job_running_when_the_process_is_killed_runs_again_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    let hook = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());

    let mut server = start(dir.path());
    let (status, body) =
        admin_call("POST", format!("{}/api/jobs", server.base_url()), Some(json!({"name": "webhook", "payload": {"url": hook, "body": {"n": 1}}}))).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    // The webhook call has reached us: the job is running. Kill the process mid-call.
    let first = accept(&listener).await;
    server.kill().unwrap();
    drop(first);

    let server = start(dir.path());
    let mut second = accept(&listener).await;
    second.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut request = [0u8; 4096];
    let n = second.read(&mut request).unwrap();
    assert!(String::from_utf8_lossy(&request[..n]).starts_with("POST /hook"), "the job ran again");
    second.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    drop(second);

    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, job) = admin_call("GET", format!("{}/api/jobs/{id}", server.base_url()), None).await;
        assert_eq!(status, 200, "{job}");
        if job["status"] == "succeeded" {
            // The interrupted attempt is not counted against the job.
            assert_eq!(job["attempts"], 1, "{job}");
            break;
        }
        assert!(Instant::now() < deadline, "the job did not finish after the restart: {job}");
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn built_in_maintenance_jobs_run() {
    let app = app().await;
    let cleanup = enqueue(&app, json!({"name": "sessions_cleanup"})).await;
    let compact = enqueue(&app, json!({"name": "changelog_compact"})).await;
    assert_eq!(wait_for(&app, &cleanup, |j| j["status"] == "succeeded").await["result"], json!({"ended": 0}));
    let job = wait_for(&app, &compact, |j| j["status"] == "succeeded").await;
    assert_eq!(job["result"]["retain"], plaza::config::DEFAULT_CHANGELOG_RETAIN);
}
