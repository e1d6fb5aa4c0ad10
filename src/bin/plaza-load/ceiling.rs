//! The `ceiling` mode: a bare actix-web server with Plaza's entity routes, worker count and
//! response sizes, and no work behind them (no middleware, no database, canned bodies). What
//! the `http` mode measures against it shows how far Plaza's request path is from what
//! actix-web itself can do on this machine: the `http` mode spawns one (`plaza-load ceiling
//! --port 0`) and runs the same phases against it first, then reports Plaza's figures as ratios
//! (insert ÷ ceiling POST, get-by-id ÷ ceiling GET, list ÷ ceiling list GET).
//!
//! Served routes (as Plaza's, same path patterns so the router does the same matching):
//! - `POST /api/entities/{entity}`: reads the whole body, answers 201 `{"id":"<uuid>"}`;
//! - `GET /api/entities/{entity}/{id}`: 200 with a canned `Bench` row of Plaza's size;
//! - `GET /api/entities/{entity}`: 200 with a canned page of 20 such rows;
//! - `GET /api/entities/{entity}/cursor`, `PATCH`/`DELETE /api/entities/{entity}/{id}`:
//!   registered so the route table has the same shape; they answer canned bodies too.
//!
//! Responses carry the headers Plaza adds to every answer (security headers, CORS `vary` and
//! credentials), so the bytes on the wire match.
//! `plaza-load ceiling` on its own serves until it is stopped (SIGTERM or Ctrl-C), printing
//! `listening on ADDR` like `plaza`.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use clap::Args as ClapArgs;

use crate::process::{Launch, PlazaProcess, StartError, STARTUP_TIMEOUT};

/// A row shaped and sized as Plaza's `Bench` rows are (uuid v7 id, millisecond timestamps).
const ROW: &str = r#"{"id":"0192f3a4-5b6c-7d8e-9fa0-b1c2d3e4f5a6","createdAt":"2026-11-30T04:00:00.000Z","updatedAt":"2026-11-30T04:00:00.000Z","title":"item 123456","n":123456,"done":0}"#;
/// Rows in a list page (the `http` mode asks for `limit=20`).
const PAGE_ROWS: usize = 20;

#[derive(ClapArgs)]
pub struct Args {
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// HTTP workers; default as `plaza`'s: half the cores, at least one.
    #[arg(long)]
    workers: Option<usize>,
}

/// `plaza`'s default worker count: half the cores, at least one.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get() / 2).max(1)
}

pub fn run(args: Args) -> Result<(), String> {
    let workers = args.workers.unwrap_or_else(default_workers).max(1);
    actix_web::rt::System::new().block_on(serve(args.port, workers))
}

async fn serve(port: u16, workers: usize) -> Result<(), String> {
    let page = web::Bytes::from(format!(
        r#"{{"count":{PAGE_ROWS},"data":[{}],"offset":0,"limit":{PAGE_ROWS}}}"#,
        vec![ROW; PAGE_ROWS].join(",")
    ));
    let server = HttpServer::new(move || {
        let page = page.clone();
        App::new().service(
            web::scope("")
                .service(
                    web::resource("/api/entities/{entity}")
                        .route(web::get().to(move |_: web::Path<String>| canned(StatusCode::OK, page.clone())))
                        .route(web::post().to(insert)),
                )
                .service(web::resource("/api/entities/{entity}/cursor").route(web::get().to(|| canned(StatusCode::OK, ROW.into()))))
                .service(
                    web::resource("/api/entities/{entity}/{id}")
                        .route(web::get().to(get))
                        .route(web::patch().to(get))
                        .route(web::delete().to(get)),
                ),
        )
    })
    .workers(workers)
    .on_connect(|conn, _| {
        // As `plaza` does: small replies go out at once.
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .bind(("127.0.0.1", port))
    .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    for addr in server.addrs() {
        println!("listening on {addr} (ceiling, {workers} worker(s))");
    }
    server.run().await.map_err(|e| e.to_string())
}

async fn canned(status: StatusCode, body: web::Bytes) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"))
        .insert_header(("Access-Control-Allow-Credentials", "true"))
        .body(body)
}

/// Takes the whole body in (as a real insert must) and answers a fresh id.
async fn insert(_: web::Path<String>, _body: web::Bytes) -> HttpResponse {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = format!(r#"{{"id":"0192f3a4-5b6c-7d8e-9fa0-{n:012x}"}}"#);
    canned(StatusCode::CREATED, id.into()).await
}

async fn get(_: web::Path<(String, String)>) -> HttpResponse {
    canned(StatusCode::OK, ROW.into()).await
}

/// A ceiling server spawned from this executable for a run; stopped when dropped.
pub struct Ceiling {
    process: PlazaProcess,
}

impl Ceiling {
    pub fn start(workers: usize) -> Result<Ceiling, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable's path: {e}"))?;
        let process = Launch::new(&exe)
            .args(["ceiling", "--port", "0", "--workers", &workers.to_string()])
            .start()
            .map_err(|e| match e {
                StartError::Timeout { .. } => {
                    format!("the ceiling server printed no 'listening on' line within {} s", STARTUP_TIMEOUT.as_secs())
                }
                other => format!("cannot start the ceiling server: {other}"),
            })?;
        Ok(Ceiling { process })
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.port())
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        self.process.stop(std::time::Duration::from_secs(5));
    }
}
