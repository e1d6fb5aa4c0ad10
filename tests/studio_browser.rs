//! Studio in a real browser: Debian's `chromium`, headless, driven over WebDriver
//! (`chromedriver`, started here on a free port and killed at the end) against a spawned
//! `plaza`. Walks what an operator does — a wrong token refused, sign in, an entity's rows,
//! create and edit a row through the forms, a change inserted over HTTP appearing live — and
//! writes a screenshot of each main page to `target/studio-screenshots/` for review.
//!
//! Needs `chromium` and `chromium-driver` (`.ci/run` installs them); elsewhere point
//! `PLAZA_TEST_CHROMIUM` and `PLAZA_TEST_CHROMEDRIVER` at a matching pair. Every wait is a
//! WebDriver wait for an element or text, never a sleep.

mod common;

use std::io::{BufRead, BufReader};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use serde_json::{json, Value};

use common::remote::send;
use common::ADMIN;

/// How long chromedriver has to say it is listening.
const DRIVER_STARTUP: Duration = Duration::from_secs(30);
/// Longest any element or text is waited for (a debug build on a busy 2-core machine).
const WAIT: Duration = Duration::from_secs(30);

/// chromedriver as a child process; dropping it kills it (and with it any browser it started).
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Starts chromedriver and waits for its "started successfully" line.
fn start_driver() -> Driver {
    let port = free_port();
    let exe = std::env::var("PLAZA_TEST_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let mut child = Command::new(&exe)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {exe} ({e}); install Debian's chromium and chromium-driver (see .ci/run)"));
    let stdout = child.stdout.take().expect("chromedriver stdout");
    let driver = Driver { child, port };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("started successfully") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(DRIVER_STARTUP).expect("chromedriver did not say it started");
    driver
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": std::env::var("PLAZA_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            // CI runs as root, where Chromium's sandbox cannot start.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800", "--lang=en-US"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session with headless chromium")
}

fn screenshots_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("studio-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).expect("write screenshot");
}

async fn wait_for<'a>(c: &Client, what: Locator<'a>) -> fantoccini::elements::Element {
    let described = format!("{what:?}");
    c.wait().at_most(WAIT).for_element(what).await.unwrap_or_else(|e| panic!("waiting for {described}: {e}"))
}

async fn xpath(c: &Client, path: &str) -> fantoccini::elements::Element {
    wait_for(c, Locator::XPath(path)).await
}

async fn css(c: &Client, selector: &str) -> fantoccini::elements::Element {
    wait_for(c, Locator::Css(selector)).await
}

/// Navigates inside Studio and waits for the page's heading.
async fn page(c: &Client, base: &str, hash: &str, heading: &str) {
    c.goto(&format!("{base}/studio/{hash}")).await.expect("goto");
    xpath(c, &format!("//main//h1[normalize-space()='{heading}']")).await;
}

/// Some life on every page: rows, an account, a room with a member and an event, a running
/// shard with a player, a job, a cache key, a file.
/// What the walk checks against: the Todo ids in insertion order, and bob's session token.
struct Seeded {
    todos: Vec<String>,
    bob: String,
}

async fn seed(http: &awc::Client, base: &str) -> Seeded {
    let admin = Some(ADMIN);
    let mut ids = Vec::new();
    for (title, done, priority) in [("Water the plants", 0, 2), ("File the taxes", 1, 5), ("Call the bank", 0, 1)] {
        let (status, body) =
            send(http, admin, "POST", &format!("{base}/api/entities/Todo"), Some(&json!({"title": title, "done": done, "priority": priority, "tags": ["home"]}))).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    // Thirty users: more than Studio's first page of 25.
    let users: Vec<Value> = (1..=30)
        .map(|n| json!({"op": "insert", "entity": "User", "data": {"email": format!("user{n:02}@example.com"), "displayName": format!("User {n:02}")}}))
        .collect();
    let (status, body) = send(http, admin, "POST", &format!("{base}/api/batch"), Some(&json!({"operations": users}))).await;
    assert_eq!((status, body["succeeded"].clone()), (200, json!(30)), "{body}");
    // An account, registered as a browser would (no bearer token, so with an allowed Origin).
    let resp = http
        .post(format!("{base}/api/auth/password/register"))
        .insert_header(("Origin", common::ORIGIN))
        .send_json(&json!({"email": "ada@example.com", "password": "analytical engine 1843"}))
        .await
        .expect("register");
    assert_eq!(resp.status().as_u16(), 201);
    let (status, body) = send(http, admin, "POST", &format!("{base}/api/rooms/join"),
        Some(&json!({"room": "lobby", "user_id": "ada", "presence": {"status": "reading"}}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(http, admin, "POST", &format!("{base}/api/rooms/broadcast"),
        Some(&json!({"room": "lobby", "event": "chat", "data": {"text": "hello from the test"}}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(http, admin, "POST", &format!("{base}/api/rooms/state"),
        Some(&json!({"room": "lobby", "patch": {"topic": "release"}}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(http, admin, "POST", &format!("{base}/api/shards"), Some(&json!({"name": "arena-1", "sim": "arena", "tick_hz": 10}))).await;
    assert_eq!(status, 201, "{body}");
    let (status, player) = send(http, admin, "POST", &format!("{base}/api/auth/session"), Some(&json!({"user_id": "bob"}))).await;
    assert_eq!(status, 201, "{player}");
    let (status, body) = send(http, player["token"].as_str(), "POST", &format!("{base}/api/shards/arena-1/input"), Some(&json!({"input": {"move": [1, 0.5]}}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(http, admin, "POST", &format!("{base}/api/jobs"), Some(&json!({"name": "nightly-report", "payload": {"day": 1}, "max_attempts": 1}))).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(http, admin, "POST", &format!("{base}/api/cache"), Some(&json!({"cmd": "SET", "key": "feature:dark-mode", "value": {"on": true}, "ttl": 3600}))).await;
    assert_eq!(status, 200, "{body}");
    let multipart = "--studio\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\n\r\nsome notes\r\n--studio--\r\n";
    let resp = http
        .post(format!("{base}/api/files/upload"))
        .insert_header(("Authorization", format!("Bearer {ADMIN}")))
        .insert_header(("Content-Type", "multipart/form-data; boundary=studio"))
        .send_body(multipart)
        .await
        .expect("upload");
    assert_eq!(resp.status().as_u16(), 201);
    Seeded { todos: ids, bob: player["token"].as_str().unwrap().to_string() }
}

#[actix_rt::test]
async fn studio_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::up(common::serve(&dir.path().join("studio.db"), ADMIN).env("PLAZA_CSRF_ORIGINS", common::ORIGIN));
    let base = server.base_url();
    let http = awc::Client::default();
    let seeded = seed(&http, &base).await;

    let driver = start_driver();
    let c = browser(&driver).await;
    // A failed step still ends the browser session (so no Chromium outlives the test) before
    // the failure is reported; dropping `driver` then stops chromedriver.
    let outcome = AssertUnwindSafe(walk(&c, &http, &base, &seeded)).catch_unwind().await;
    let _ = c.close().await;
    drop(driver);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn walk(c: &Client, http: &awc::Client, base: &str, seeded: &Seeded) {
    // Without a token only the sign-in form shows; a wrong token is refused, visibly.
    c.goto(&format!("{base}/studio")).await.expect("open Studio");
    let token = css(c, "#token").await;
    assert!(!c.find(Locator::Css("#nav")).await.unwrap().is_displayed().await.unwrap(), "navigation shows before sign-in");
    assert!(!c.find(Locator::Css("#view")).await.unwrap().is_displayed().await.unwrap(), "a page shows before sign-in");
    token.send_keys("not-the-admin-token").await.unwrap();
    c.find(Locator::Css("#sign-in-form button[type='submit']")).await.unwrap().click().await.unwrap();
    let refused = xpath(c, "//p[@id='sign-in-error' and contains(., 'refused')]").await;
    assert!(refused.is_displayed().await.unwrap());
    assert!(!c.find(Locator::Css("#nav")).await.unwrap().is_displayed().await.unwrap(), "a wrong token signed in");
    let stored: Value = c.execute("return sessionStorage.getItem('plaza.studio.token')", vec![]).await.unwrap();
    assert_eq!(stored, Value::Null, "a refused token was kept");
    shot(c, "01-sign-in-refused").await;

    // Sign in: the first entity's rows show.
    let token = css(c, "#token").await;
    token.clear().await.unwrap();
    // From the keyboard: Enter submits the form.
    token.send_keys(&format!("{ADMIN}\u{E007}")).await.unwrap();
    xpath(c, "//main//h1[normalize-space()='Todo']").await;
    xpath(c, "//table//td[normalize-space()='Water the plants']").await;
    xpath(c, &format!("//table//code[normalize-space()='{}']", seeded.todos[2])).await;
    let stored: Value = c.execute("return sessionStorage.getItem('plaza.studio.token')", vec![]).await.unwrap();
    assert_eq!(stored, json!(ADMIN));
    assert!(css(c, "#nav").await.is_displayed().await.unwrap());

    // The filter language, with its errors inline.
    let filter = css(c, "#filter").await;
    filter.send_keys("{\"done\": ").await.unwrap();
    c.find(Locator::Css("form.filter button[type='submit']")).await.unwrap().click().await.unwrap();
    xpath(c, "//p[@id='filter-error' and contains(., 'Not a filter')]").await;
    filter.clear().await.unwrap();
    filter.send_keys("{\"nope\": 1}").await.unwrap();
    c.find(Locator::Css("form.filter button[type='submit']")).await.unwrap().click().await.unwrap();
    xpath(c, "//p[@id='filter-error' and contains(., 'VALIDATION')]").await;
    filter.clear().await.unwrap();
    filter.send_keys("{\"done\": 1}").await.unwrap();
    c.find(Locator::Css("form.filter button[type='submit']")).await.unwrap().click().await.unwrap();
    xpath(c, "//table[caption='Todo rows' and not(.//td[normalize-space()='Water the plants'])]//td[normalize-space()='File the taxes']").await;
    shot(c, "03-data-filtered").await;
    c.find(Locator::XPath("//form[contains(@class,'filter')]//button[normalize-space()='Clear']")).await.unwrap().click().await.unwrap();
    xpath(c, "//table//td[normalize-space()='Water the plants']").await;

    // Create a row through the typed form, and see it in the table.
    c.find(Locator::XPath("//button[normalize-space()='New row']")).await.unwrap().click().await.unwrap();
    css(c, "dialog[open] input[name='title']").await.send_keys("Written by Studio").await.unwrap();
    c.find(Locator::Css("dialog[open] input[name='done']")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("dialog[open] input[name='priority']")).await.unwrap().send_keys("7").await.unwrap();
    c.find(Locator::Css("dialog[open] textarea[name='tags']")).await.unwrap().send_keys("[\"studio\", 1]").await.unwrap();
    shot(c, "04-data-new-row-form").await;
    c.find(Locator::Css("dialog[open] button[type='submit']")).await.unwrap().click().await.unwrap();
    let created = xpath(c, "//table//tr[td[normalize-space()='Written by Studio']]").await;
    let created_id = created.find(Locator::Css("code.id")).await.unwrap().text().await.unwrap();
    let (status, row) = send(http, Some(ADMIN), "GET", &format!("{base}/api/entities/Todo/{created_id}"), None).await;
    assert_eq!(status, 200, "{row}");
    assert_eq!((row["done"].clone(), row["priority"].clone(), row["tags"].clone()), (json!(1), json!(7), json!(["studio", 1])));

    // Edit it: the form comes filled in; the new title shows in the table.
    created.find(Locator::XPath(".//button[normalize-space()='Edit']")).await.unwrap().click().await.unwrap();
    let title = css(c, "dialog[open] input[name='title']").await;
    assert_eq!(title.prop("value").await.unwrap().as_deref(), Some("Written by Studio"));
    title.clear().await.unwrap();
    title.send_keys("Edited in Studio").await.unwrap();
    c.find(Locator::Css("dialog[open] button[type='submit']")).await.unwrap().click().await.unwrap();
    xpath(c, &format!("//table//tr[.//code[normalize-space()='{created_id}']]/td[normalize-space()='Edited in Studio']")).await;
    let (_, row) = send(http, Some(ADMIN), "GET", &format!("{base}/api/entities/Todo/{created_id}"), None).await;
    assert_eq!(row["title"], "Edited in Studio");
    assert_eq!(row["priority"], 7, "editing the title kept the other fields");
    // Sort by a column header: ascending, then descending.
    let priority = "//button[starts-with(normalize-space(), 'priority')]";
    xpath(c, &format!("//th{priority}")).await.click().await.unwrap();
    xpath(c, "//table[caption='Todo rows']//tbody/tr[1]/td[normalize-space()='Call the bank']").await;
    xpath(c, &format!("//th[@aria-sort='ascending']{priority}")).await.click().await.unwrap();
    xpath(c, "//table[caption='Todo rows']//tbody/tr[1]/td[normalize-space()='Edited in Studio']").await;
    xpath(c, &format!("//th[@aria-sort='descending']{priority}")).await;
    shot(c, "02-data").await;

    // Paging: another entity, 30 rows, 25 a page.
    page(c, base, "#/data/User", "User").await;
    xpath(c, "//div[contains(@class,'pager')]/span[normalize-space()='Rows 1–25']").await;
    assert!(c.find_all(Locator::XPath("//td[normalize-space()='user26@example.com']")).await.unwrap().is_empty());
    xpath(c, "//button[normalize-space()='Next ›']").await.click().await.unwrap();
    xpath(c, "//div[contains(@class,'pager')]/span[normalize-space()='Rows 26–30']").await;
    xpath(c, "//table//td[normalize-space()='user26@example.com']").await;
    assert!(!xpath(c, "//button[normalize-space()='Next ›']").await.is_enabled().await.unwrap(), "a next page after the last");

    // Live: a row inserted over HTTP appears in the change log.
    page(c, base, "#/live", "Live").await;
    xpath(c, "//span[@id='live-status' and normalize-space()='Live']").await;
    let (status, body) = send(http, Some(ADMIN), "POST", &format!("{base}/api/entities/Todo"), Some(&json!({"title": "Arrived live", "done": false}))).await;
    assert_eq!(status, 201, "{body}");
    let live_id = body["id"].as_str().unwrap();
    xpath(c, &format!("//tbody[@id='changes']/tr[td[normalize-space()='insert']]//code[normalize-space()='{live_id}']")).await;
    // Paused, a change waits; resumed, it shows.
    css(c, "#pause").await.click().await.unwrap();
    send(http, Some(ADMIN), "DELETE", &format!("{base}/api/entities/Todo/{live_id}"), None).await;
    xpath(c, "//span[@id='live-pending' and contains(., '1 new while paused')]").await;
    assert!(c.find_all(Locator::XPath("//tbody[@id='changes']/tr[td[normalize-space()='delete']]")).await.unwrap().is_empty());
    css(c, "#pause").await.click().await.unwrap();
    xpath(c, &format!("//tbody[@id='changes']/tr[td[normalize-space()='delete']]//code[normalize-space()='{live_id}']")).await;
    xpath(c, "//table[caption='Sessions and API keys, newest first']//code[normalize-space()='bob']").await;
    shot(c, "05-live").await;

    page(c, base, "#/rooms/lobby", "Rooms").await;
    xpath(c, "//table[caption='Members and presence']//code[normalize-space()='ada']").await;
    xpath(c, "//table[contains(caption, 'room events')]//td[normalize-space()='chat']").await;
    shot(c, "06-rooms").await;

    page(c, base, "#/shards/arena-1", "Shards").await;
    xpath(c, "//table[caption='Running shards']//td[normalize-space()='10 Hz']").await;
    css(c, "svg.arena circle").await;
    shot(c, "07-shards").await;
    c.find(Locator::Css("button[aria-label='Stop shard arena-1']")).await.unwrap().click().await.unwrap();
    c.accept_alert().await.expect("the stop confirmation");
    xpath(c, "//table[caption='Running shards']//td[normalize-space()='No shard is running.']").await;

    page(c, base, "#/jobs", "Jobs").await;
    xpath(c, "//table//td[normalize-space()='nightly-report']").await;
    xpath(c, "//table[caption='Cron entries (UTC)']//td[normalize-space()='sessions_cleanup']").await;
    shot(c, "08-jobs").await;
    // The job has no handler, so its one attempt kills it; Retry makes it pending again.
    page(c, base, "#/jobs/dead", "Jobs").await;
    xpath(c, "//table//tr[td[normalize-space()='nightly-report']]//button[normalize-space()='Retry']").await.click().await.unwrap();
    xpath(c, "//p[@id='toast' and contains(., 'is pending again')]").await;

    page(c, base, "#/files", "Files").await;
    xpath(c, "//table//a[normalize-space()='notes.txt']").await;
    shot(c, "09-files").await;

    page(c, base, "#/users", "Users").await;
    xpath(c, "//table//td[normalize-space()='ada@example.com']").await;
    shot(c, "10-users").await;
    // Revoke bob's session from the list: it goes, and his token stops working.
    let sessions = "//table[caption='Sessions and API keys, newest first']";
    xpath(c, &format!("{sessions}//tr[td/code[normalize-space()='bob']]//button[normalize-space()='Revoke']")).await.click().await.unwrap();
    c.accept_alert().await.expect("the revoke confirmation");
    xpath(c, &format!("{sessions}[not(.//code[normalize-space()='bob'])]//tbody/tr")).await;
    let (status, _) = send(http, Some(&seeded.bob), "GET", &format!("{base}/api/auth/me"), None).await;
    assert_eq!(status, 401, "a session revoked in Studio still works");

    page(c, base, "#/cache", "Cache").await;
    xpath(c, "//table//button[normalize-space()='feature:dark-mode']").await;
    shot(c, "11-cache").await;

    page(c, base, "#/health", "Health").await;
    // Traffic after the first sample shows in a later interval's rate and p99 (rates need two
    // samples, so this also waits for the 2 s poll to come round).
    xpath(c, "//p[@id='health-status' and starts-with(normalize-space(), 'Updated')]").await;
    for _ in 0..50 {
        send(http, Some(ADMIN), "GET", &format!("{base}/api/entities/Todo?limit=5"), None).await;
    }
    xpath(c, "//span[@data-metric='rps' and normalize-space()!='—' and normalize-space()!='0.0']").await;
    xpath(c, "//span[@data-metric='p99' and normalize-space()!='—']").await;
    xpath(c, "//span[@data-metric='uptime' and normalize-space()!='—']").await;
    shot(c, "12-health").await;

    // Phone width: the same data page, one column.
    c.set_window_size(390, 844).await.unwrap();
    page(c, base, "#/data/Todo", "Todo").await;
    xpath(c, "//table//td[normalize-space()='Water the plants']").await;
    shot(c, "13-data-phone").await;
}
