//! An upload over `PLAZA_MAX_UPLOAD_BYTES` sent without a declared length is refused with 413
//! while it streams, and the server never holds it in memory: the process (server included)
//! grows by far less than the limit. Alone in its binary so no other test's allocations count.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use actix_web::App;
use common::*;

const BOUNDARY: &str = "plazaTestBoundary7MA4YWxk";

/// Resident memory of this process (the server runs in it), in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4096
}

#[actix_rt::test]
async fn oversize_upload_is_refused_while_streaming_without_buffering() {
    let files = tempfile::tempdir().unwrap();
    let cfg = plaza::config::Config { files_dir: Some(files.path().to_path_buf()), ..config() };
    let state = plaza::build_state_with(cfg, todo_manifest()).unwrap();
    let srv = actix_test::start(move || App::new().configure(plaza::configure(state.clone())));
    let addr = srv.addr();

    // 40 MiB, chunked (no declared length), against the 25 MiB default: the server must count.
    let outcome = actix_web::web::block(move || {
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut writer = sock.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            let before = rss();
            let mut peak = before;
            let head = format!(
                "POST /api/files/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nTransfer-Encoding: chunked\r\n\
                 Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
            );
            let part = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n");
            writer.write_all(head.as_bytes()).unwrap();
            let mut send = |data: &[u8]| writer.write_all(format!("{:x}\r\n", data.len()).as_bytes()).and_then(|()| writer.write_all(data)).and_then(|()| writer.write_all(b"\r\n"));
            let mut sent = 0u64;
            let chunk = vec![b'z'; 256 * 1024];
            let mut ok = send(part.as_bytes()).is_ok();
            while ok && sent < 40 << 20 {
                ok = send(&chunk).is_ok();
                sent += chunk.len() as u64;
                peak = peak.max(rss());
            }
            (before, peak, sent)
        });
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        while !response.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
        let _ = sock.shutdown(std::net::Shutdown::Both);
        (String::from_utf8_lossy(&response).into_owned(), sender.join().unwrap())
    })
    .await
    .unwrap();
    let (response, (before, peak, _sent)) = outcome;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    // Holding the upload would have grown the process by 25 MiB or more.
    assert!(peak - before < 12 << 20, "memory grew by {} MiB", (peak - before) >> 20);
    // Nothing is left behind, not even the partial file.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(files.path()).unwrap().next().is_some() {
        assert!(std::time::Instant::now() < deadline, "the partial upload was not removed");
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
}
