//! Files: `POST /api/files/upload` (multipart field `file`, a session or the admin) streams the
//! upload to disk under a server-chosen name while hashing it and counting its size — past
//! `PLAZA_MAX_UPLOAD_BYTES` it stops with 413, so a file is never held in memory — then records
//! its metadata (`plaza_actors::files`) through the Writer. `GET /api/files/:id` streams it back
//! with its sniffed type; `DELETE` is for its owner or the admin. Every disk operation runs on a
//! blocking thread (`web::block`), never on an arbiter.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use actix_multipart::Multipart;
use actix_web::http::header::{self, Charset, ContentDisposition, DispositionParam, DispositionType, ExtendedValue};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use plaza_actors::files::{self, FileMeta};
use plaza_actors::store::writer::Write as WriteOps;
use plaza_actors::PlazaError;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::resource;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Admin, Auth, Page};
use crate::AppState;

/// Bytes written to disk at a time (chunks are gathered up to this first).
const WRITE_CHUNK: usize = 256 * 1024;
/// Bytes read from disk at a time when serving.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes looked at to sniff the content type.
const SNIFF_BYTES: usize = 8 * 1024;
/// Room for multipart boundaries and part headers around the file in a declared length.
const MULTIPART_SLACK: u64 = 64 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/files/upload").route(web::post().to(upload)))
        .service(resource("/api/files/{id}").route(web::get().to(download)).route(web::delete().to(delete)))
        .service(resource("/api/admin/files").route(web::get().to(list)));
}

/// Admin (Studio): `?limit=&offset=` → `{"files":[{id,owner,name,content_type,size,sha256,
/// created_at,url}]}`, newest first.
async fn list(_: Admin, state: web::Data<AppState>, page: Page) -> ApiResult {
    let listed = state.read(move |r| r.with_conn(|c| files::list(c, page.limit, page.offset))).await??;
    let files: Vec<serde_json::Value> = listed
        .into_iter()
        .map(|f| {
            let url = format!("/api/files/{}", f.id);
            let mut v = json!(f);
            v["url"] = json!(url);
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "files": files, "limit": page.limit, "offset": page.offset })))
}

fn io(e: std::io::Error) -> ApiError {
    PlazaError::Internal(format!("file storage: {e}")).into()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> Result<T, ApiError> {
    web::block(f).await.map_err(|e| ApiError::from(PlazaError::Unavailable(format!("blocking pool: {e}"))))?.map_err(io)
}

/// The content type from the first bytes: a known signature, else UTF-8 text, else bytes.
fn sniff(head: &[u8]) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_string();
    }
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        // A multi-byte character cut at the end of the sniffed bytes is still text.
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    };
    if text && !head.contains(&0) {
        "text/plain; charset=utf-8".into()
    } else {
        "application/octet-stream".into()
    }
}

/// The caller's identity as a file owner; anonymous callers are 401.
/// Who uploads or deletes: a session or the admin; a read-only API key may only download.
fn owner(auth: &Auth) -> Result<String, ApiError> {
    if auth.ctx.read_only {
        return Err(PlazaError::Forbidden("a read-only API key cannot upload or delete files".into()).into());
    }
    match (&auth.ctx.user_id, auth.ctx.admin) {
        (_, true) => Ok("admin".into()),
        (Some(user), _) => Ok(user.clone()),
        (None, false) => Err(ApiError::Unauthorized("uploading and deleting files needs a session".into())),
    }
}

struct Stored {
    size: u64,
    sha256: String,
    content_type: String,
}

/// Streams one multipart field into `tmp`, counting, hashing and sniffing as it goes.
async fn store_field(field: &mut actix_multipart::Field, tmp: PathBuf, limit: u64) -> Result<Stored, ApiError> {
    let mut file = blocking(move || File::create(tmp)).await?;
    let (mut hasher, mut size, mut head, mut buf) = (Sha256::new(), 0u64, Vec::new(), Vec::with_capacity(WRITE_CHUNK));
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("could not read the upload: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(ApiError::PayloadTooLarge(limit as usize));
        }
        hasher.update(&chunk);
        if head.len() < SNIFF_BYTES {
            head.extend_from_slice(&chunk[..chunk.len().min(SNIFF_BYTES - head.len())]);
        }
        buf.extend_from_slice(&chunk);
        if buf.len() >= WRITE_CHUNK {
            let full = std::mem::replace(&mut buf, Vec::with_capacity(WRITE_CHUNK));
            file = blocking(move || file.write_all(&full).map(|()| file)).await?;
        }
    }
    blocking(move || {
        file.write_all(&buf)?;
        file.sync_data()
    })
    .await?;
    let sha256 = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Stored { size, sha256, content_type: sniff(&head) })
}

async fn remove(path: PathBuf) {
    let _ = web::block(move || std::fs::remove_file(path)).await;
}

/// Multipart with a `file` field → 201 `{"id","url","size","content_type","sha256","name"}`.
async fn upload(req: HttpRequest, auth: Auth, state: web::Data<AppState>, payload: web::Payload) -> ApiResult {
    let owner = owner(&auth)?;
    let limit = state.config.max_upload_bytes;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit + MULTIPART_SLACK) {
        return Err(ApiError::PayloadTooLarge(limit as usize));
    }
    let dir = state.files_dir.clone();
    let mkdir = dir.clone();
    blocking(move || std::fs::create_dir_all(mkdir)).await?;
    let mut form = Multipart::new(req.headers(), payload);
    let mut found = None;
    let mut other_bytes = 0u64;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| ApiError::BadRequest(format!("not a multipart/form-data upload: {e}")))?;
        if field.name() != Some("file") || found.is_some() {
            // Other fields are read and dropped, within the same bound.
            while let Some(chunk) = field.next().await {
                other_bytes += chunk.map_err(|e| ApiError::BadRequest(format!("could not read the upload: {e}")))?.len() as u64;
                if other_bytes > limit {
                    return Err(ApiError::PayloadTooLarge(limit as usize));
                }
            }
            continue;
        }
        let name = files::clean_name(field.content_disposition().and_then(|d| d.get_filename()).unwrap_or_default());
        let id = files::new_id()?;
        let tmp = dir.join(format!(".{id}.part"));
        match store_field(&mut field, tmp.clone(), limit).await {
            Ok(stored) => found = Some((id, name, tmp, stored)),
            Err(e) => {
                remove(tmp).await;
                return Err(e);
            }
        }
    }
    let (id, name, tmp, stored) = found.ok_or_else(|| ApiError::BadRequest("the upload needs a multipart field named \"file\"".into()))?;
    let path = dir.join(&id);
    let (from, to) = (tmp.clone(), path.clone());
    if let Err(e) = blocking(move || std::fs::rename(from, to)).await {
        remove(tmp).await;
        return Err(e);
    }
    let meta = FileMeta {
        id: id.clone(),
        owner,
        name,
        content_type: stored.content_type,
        size: stored.size as i64,
        sha256: stored.sha256,
        created_at: chrono::Utc::now().timestamp_millis(),
    };
    if let Err(e) = state.plaza.writer.send(WriteOps { auth: auth.ctx.clone(), ops: vec![meta.insert_op()] }).await.map_err(PlazaError::from).and_then(|r| r) {
        remove(path).await;
        return Err(e.into());
    }
    Ok(HttpResponse::Created().json(json!({
        "id": id, "url": format!("/api/files/{id}"), "size": meta.size, "content_type": meta.content_type,
        "sha256": meta.sha256, "name": meta.name,
    })))
}

async fn meta(state: &AppState, id: &str) -> Result<FileMeta, ApiError> {
    let missing = || ApiError::from(PlazaError::NotFound(format!("no file '{id}'")));
    if !files::is_id(id) {
        return Err(missing());
    }
    let key = id.to_string();
    state.read(move |r| r.with_conn(|c| files::read(c, &key))).await??.ok_or_else(missing)
}

/// `Content-Disposition: attachment` with the original name: an ASCII-only fallback and the
/// exact name as RFC 5987 `filename*`.
fn disposition(name: &str) -> ContentDisposition {
    let ascii: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || " ._-()".contains(c) { c } else { '_' }).collect();
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![
            DispositionParam::Filename(ascii),
            DispositionParam::FilenameExt(ExtendedValue { charset: Charset::Ext("UTF-8".into()), language_tag: None, value: name.as_bytes().to_vec() }),
        ],
    }
}

/// Streams the file (anyone holding its unguessable id may read it).
async fn download(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let meta = meta(&state, &id).await?;
    let path = state.files_dir.join(&meta.id);
    let file = match web::block(move || File::open(path)).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PlazaError::NotFound(format!("file '{}' is missing from storage", meta.id)).into())
        }
        Ok(Err(e)) => return Err(io(e)),
        Err(e) => return Err(PlazaError::Unavailable(format!("blocking pool: {e}")).into()),
    };
    let body = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let read = web::block(move || {
            let mut buf = vec![0u8; READ_CHUNK];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((buf, file))
        })
        .await;
        match read {
            Ok(Ok((buf, _))) if buf.is_empty() => None,
            Ok(Ok((buf, file))) => Some((Ok::<_, actix_web::Error>(web::Bytes::from(buf)), Some(file))),
            Ok(Err(e)) => Some((Err(actix_web::error::ErrorInternalServerError(e)), None)),
            Err(e) => Some((Err(actix_web::error::ErrorInternalServerError(e)), None)),
        }
    });
    Ok(HttpResponse::Ok()
        .content_type(meta.content_type.as_str())
        .insert_header(disposition(&meta.name))
        .insert_header(("Content-Security-Policy", "default-src 'none'; sandbox"))
        .insert_header(("X-Content-SHA256", meta.sha256.as_str()))
        .no_chunking(meta.size as u64)
        .streaming(body))
}

/// The owner or the admin removes the file; others get 403.
async fn delete(auth: Auth, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let caller = owner(&auth)?;
    let meta = meta(&state, &id).await?;
    if !auth.ctx.admin && caller != meta.owner {
        return Err(PlazaError::Forbidden("only the file's owner or the admin may delete it".into()).into());
    }
    state.plaza.writer.send(WriteOps { auth: auth.ctx.clone(), ops: vec![files::delete_op(&meta.id)] }).await??;
    let path: PathBuf = Path::new(&state.files_dir).join(&meta.id);
    let _ = web::block(move || std::fs::remove_file(path)).await;
    Ok(HttpResponse::Ok().json(json!({"id": meta.id, "deleted": true})))
}
