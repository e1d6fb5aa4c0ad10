//! TOTP routes: enrol (otpauth URI), confirm with a first code (backup codes, shown once),
//! disable, and the second step of a sign-in (`{"mfa_token","code"}` on `/totp/verify`).

use actix_web::{web, HttpRequest, HttpResponse};
use plaza_actors::accounts::totp::{CompleteMfa, ConfirmTotp, DisableTotp, EnrollTotp};
use serde_json::{json, Value};

use super::{attempt, code_field, count, meta, session_user, signed_in};
use crate::error::ApiResult;
use crate::extract::{Auth, JsonBody};
use crate::http::resource;
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/auth/totp/enroll").route(web::post().to(enroll)))
        .service(resource("/api/auth/totp/verify").route(web::post().to(verify)))
        .service(resource("/api/auth/totp/disable").route(web::post().to(disable)));
}

async fn enroll(state: web::Data<AppState>, auth: Auth) -> ApiResult {
    let user_id = session_user(&auth)?;
    let enrollment = state.plaza.accounts.send(EnrollTotp { user_id }).await??;
    let mut body = serde_json::to_value(&enrollment).unwrap_or(Value::Null);
    // Best effort: a URI too long for a QR code still enrols; the app shows the secret instead.
    if let Ok(qr) = qrcode::QrCode::new(enrollment.otpauth_uri.as_bytes()) {
        let svg = qr.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).build();
        body["qr_svg"] = Value::String(svg);
    }
    Ok(HttpResponse::Ok().json(body))
}

/// With `mfa_token`: finishes a sign-in (201 session). Otherwise, for a signed-in account:
/// confirms enrolment and answers `{"enabled":true,"backup_codes":[…]}`.
async fn verify(state: web::Data<AppState>, req: HttpRequest, auth: Auth, JsonBody(body): JsonBody) -> ApiResult {
    attempt(&state, &req)?;
    let code = code_field(&body)?;
    if let Some(mfa_token) = body.get("mfa_token").and_then(Value::as_str) {
        let r = state.plaza.accounts.send(CompleteMfa { mfa_token: mfa_token.to_string(), code }).await?;
        count(&state, &r);
        return signed_in(&state, r?, meta(&req)).await;
    }
    let user_id = session_user(&auth)?;
    let backup_codes = state.plaza.accounts.send(ConfirmTotp { user_id, code }).await??;
    Ok(HttpResponse::Ok().json(json!({"enabled": true, "backup_codes": backup_codes})))
}

async fn disable(state: web::Data<AppState>, req: HttpRequest, auth: Auth, JsonBody(body): JsonBody) -> ApiResult {
    attempt(&state, &req)?;
    let user_id = session_user(&auth)?;
    let code = code_field(&body)?;
    state.plaza.accounts.send(DisableTotp { user_id, code }).await??;
    Ok(HttpResponse::Ok().json(json!({"enabled": false})))
}
