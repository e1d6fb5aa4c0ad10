//! Uploads: round trip with sniffed content type, hash and headers; server-chosen names on disk;
//! owner/admin delete; anonymous 401; a declared oversize length 413. (Oversize while streaming,
//! which measures this process's memory, is alone in `tests/files_oversize.rs`.)

mod common;

use actix_web::http::StatusCode;
use actix_web::{test, App};
use common::*;
use serde_json::{json, Value};

const BOUNDARY: &str = "plazaTestBoundary7MA4YWxk";

fn multipart(field: &str, filename: &str, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n").as_bytes());
    body.extend_from_slice(
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: text/html\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn upload_req(token: Option<&str>, body: Vec<u8>) -> test::TestRequest {
    let req = test::TestRequest::post()
        .uri("/api/files/upload")
        .insert_header(("Content-Type", format!("multipart/form-data; boundary={BOUNDARY}")))
        .insert_header(("Origin", ORIGIN))
        .set_payload(body);
    match token {
        Some(t) => req.insert_header(("Authorization", format!("Bearer {t}"))),
        None => req,
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[actix_rt::test]
async fn upload_download_delete_round_trip() {
    let files = tempfile::tempdir().unwrap();
    let cfg = plaza::config::Config { files_dir: Some(files.path().to_path_buf()), ..config() };
    let state = plaza::build_state_with(cfg, todo_manifest()).unwrap();
    let app = test::init_service(App::new().configure(plaza::configure(state))).await;
    let token = |body: &Value| body["token"].as_str().unwrap().to_string();
    let alice = token(&call(&app, post("/api/auth/session", json!({"user_id": "alice"}))).await.1);
    let bob = token(&call(&app, post("/api/auth/session", json!({"user_id": "bob"}))).await.1);

    // A PNG claimed to be HTML, under a traversal-looking name with a quote in it.
    let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec();
    png.extend((0..300_000u32).map(|i| (i % 251) as u8));
    let (status, up) = call(&app, upload_req(Some(&alice), multipart("file", "../../etc/évil;x.png", &png))).await;
    assert_eq!(status, StatusCode::CREATED, "{up}");
    let id = up["id"].as_str().unwrap();
    assert_eq!(up["url"], format!("/api/files/{id}"));
    assert_eq!((up["size"].as_u64(), up["content_type"].as_str()), (Some(png.len() as u64), Some("image/png")));
    assert_eq!(up["sha256"], sha256_hex(&png));
    // On disk: only the server's id, never the client's path.
    let on_disk: Vec<String> = std::fs::read_dir(files.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(on_disk, vec![id.to_string()]);

    let resp = test::call_service(&app, get(&format!("/api/files/{id}")).to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let header = |n: &str| resp.headers().get(n).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert_eq!(header("content-type"), "image/png");
    assert_eq!(header("content-length"), png.len().to_string());
    assert_eq!(header("x-content-type-options"), "nosniff");
    let disposition = header("content-disposition");
    assert!(disposition.starts_with("attachment; filename=\"_vil_x.png\""), "{disposition}");
    assert!(disposition.contains("filename*=UTF-8''%C3%A9vil%3Bx.png"), "{disposition}");
    assert_eq!(test::read_body(resp).await.to_vec(), png);

    // Plain text is recognised as such; anything else is octet-stream.
    let (_, txt) = call(&app, upload_req(Some(&bob), multipart("file", "notes.txt", "héllo wörld".as_bytes()))).await;
    assert_eq!(txt["content_type"], "text/plain; charset=utf-8");
    let (_, bin) = call(&app, upload_req(Some(&bob), multipart("file", "x.bin", &[0, 1, 2, 3, 0xff]))).await;
    assert_eq!(bin["content_type"], "application/octet-stream");

    // Delete: not bob's; alice's works; then it is gone (row and bytes).
    let del = |t: &str, id: &str| test::TestRequest::delete().uri(&format!("/api/files/{id}")).insert_header(("Authorization", format!("Bearer {t}")));
    let (status, body) = call(&app, del(&bob, id)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
    assert_eq!(call(&app, del(&alice, id)).await.0, StatusCode::OK);
    assert_eq!(call(&app, get(&format!("/api/files/{id}"))).await.0, StatusCode::NOT_FOUND);
    assert!(!files.path().join(id).exists());
    // The admin may delete anyone's file.
    assert_eq!(call(&app, del(ADMIN, txt["id"].as_str().unwrap())).await.0, StatusCode::OK);

    // Anonymous uploads are 401; a form without a `file` field is 400; ids that cannot be ours 404.
    let (status, body) = call(&app, upload_req(None, multipart("file", "a.txt", b"x"))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"));
    assert_eq!(call(&app, upload_req(Some(&alice), multipart("other", "a.txt", b"x"))).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&app, get("/api/files/..%2F..%2Fetc%2Fpasswd")).await.0, StatusCode::NOT_FOUND);
    // A declared length over the limit is refused before reading.
    let small = plaza::config::Config { max_upload_bytes: 1000, files_dir: Some(files.path().to_path_buf()), ..config() };
    let app2 = test::init_service(App::new().configure(plaza::configure(plaza::build_state_with(small, todo_manifest()).unwrap()))).await;
    let (status, body) = call(&app2, upload_req(Some(ADMIN), multipart("file", "big.bin", &vec![7u8; 200_000]))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"));
}
