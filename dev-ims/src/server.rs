//! The development IMS's HTTP routes.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Faults, JwksAnswer, TokenSpec, keys, world};

struct Ims {
    url: String,
    faults: Arc<Faults>,
}

pub(super) fn build(listener: TcpListener, url: String, faults: Arc<Faults>) -> std::io::Result<Server> {
    let state = web::Data::new(Ims { url, faults });
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/ims/.well-known/openid-configuration", web::get().to(discovery))
            .route("/ims/keys", web::get().to(jwks))
            .route("/ims/organizations/v6", web::get().to(organizations))
            .route("/ims/profile/v1", web::get().to(profile))
            .route("/ims/token/v3", web::post().to(token))
            .route("/keys/{name}", web::get().to(certificate))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}

fn ims_error(status: u16, error: &str, description: &str) -> HttpResponse {
    let code =
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    let mut res = HttpResponse::build(code);
    if status == 429 {
        res.insert_header((header::RETRY_AFTER, "1"));
    }
    res.json(json!({"error": error, "error_description": description}))
}

/// Counts the request and applies injected faults; `Some` is the answer to send instead.
async fn faulted(ims: &Ims, req: &HttpRequest) -> Option<HttpResponse> {
    ims.faults.count(req.path());
    if let Some(tp) = req.headers().get("traceparent").and_then(|v| v.to_str().ok()) {
        ims.faults.note_traceparent(req.path(), tp);
    }
    if let Some(ts) = req.headers().get("tracestate").and_then(|v| v.to_str().ok()) {
        ims.faults.note_tracestate(req.path(), ts);
    }
    let delay = ims.faults.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = ims.faults.status() {
        return Some(ims_error(status, "server_error", "injected fault"));
    }
    if ims.faults.garbage() {
        return Some(
            HttpResponse::Ok()
                .content_type("application/json")
                .body("<html>not json"),
        );
    }
    None
}

async fn discovery(ims: web::Data<Ims>, req: HttpRequest) -> HttpResponse {
    if let Some(res) = faulted(&ims, &req).await {
        return res;
    }
    HttpResponse::Ok().json(json!({
        "issuer": format!("{}/", ims.url),
        "jwks_uri": format!("{}/ims/keys", ims.url),
        "authorization_endpoint": format!("{}/ims/authorize/v2", ims.url),
        "token_endpoint": format!("{}/ims/token/v3", ims.url),
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn jwks(ims: web::Data<Ims>, req: HttpRequest) -> HttpResponse {
    if let Some(res) = faulted(&ims, &req).await {
        return res;
    }
    // Only the access-token key: the other is reachable through its certificate alone.
    let published = match ims.faults.jwks() {
        JwksAnswer::Current => vec![keys::key(super::JWKS_KID).jwk()],
        JwksAnswer::Rotated | JwksAnswer::RotatedCertificateKept => vec![keys::successor().jwk()],
        JwksAnswer::Republished => {
            let mut jwk = keys::successor().jwk();
            jwk["kid"] = json!(super::JWKS_KID);
            vec![jwk]
        }
        JwksAnswer::NoUsableKey => vec![json!({"kty": "EC", "kid": "dev-ec-1", "crv": "P-256"})],
    };
    HttpResponse::Ok().json(json!({ "keys": published }))
}

async fn certificate(ims: web::Data<Ims>, req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    ims.faults.count(req.path());
    // A withdrawn key is withdrawn everywhere, its certificate included (unless the fault keeps it).
    let withdrawn = |k: &keys::DevKey| ims.faults.jwks() == JwksAnswer::Rotated && k.kid == super::JWKS_KID;
    match keys::by_cert_name(&name).filter(|k| !withdrawn(k)) {
        Some(k) => {
            let pem = match ims.faults.cert_expiry() {
                Some(not_after) => k.certificate_until(not_after).unwrap_or_default(),
                None => k.cert_pem.clone(),
            };
            HttpResponse::Ok()
                .content_type("application/x-x509-ca-cert")
                .body(pem)
        }
        None => ims_error(404, "not_found", "no such certificate"),
    }
}

async fn not_found() -> HttpResponse {
    ims_error(404, "not_found", "no such endpoint")
}

#[derive(Deserialize)]
struct Claims {
    #[serde(rename = "type")]
    token_type: String,
    user_id: Option<String>,
    #[serde(default)]
    scope: String,
    created_at: String,
    expires_in: String,
}

/// Verifies a bearer token the way IMS does for its own endpoints; the user it names.
fn caller(req: &HttpRequest) -> Result<(String, Vec<String>), Box<HttpResponse>> {
    let invalid = |d: &str| Box::new(ims_error(401, "invalid_token", d));
    let raw = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| invalid("missing bearer token"))?;
    let head = jsonwebtoken::decode_header(raw).map_err(|_| invalid("malformed token"))?;
    let key = keys::key(head.kid.as_deref().unwrap_or_default());
    if head.kid.as_deref() != Some(key.kid) {
        return Err(invalid("unknown key"));
    }
    let decoding = DecodingKey::from_rsa_components(&key.n, &key.e).map_err(|_| invalid("bad key"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(raw, &decoding, &validation)
        .map_err(|_| invalid("signature or claims invalid"))?
        .claims;
    let created: i64 = claims.created_at.parse().map_err(|_| invalid("bad created_at"))?;
    let expires: i64 = claims.expires_in.parse().map_err(|_| invalid("bad expires_in"))?;
    if claims.token_type != "access_token"
        || created.saturating_add(expires) < chrono::Utc::now().timestamp_millis()
    {
        return Err(invalid("token expired or not an access token"));
    }
    let user = claims.user_id.ok_or_else(|| invalid("not a user token"))?;
    Ok((user, claims.scope.split(',').map(str::to_owned).collect()))
}

/// [`faulted`], then [`caller`]: for an endpoint that takes a user's token, the user and scopes, or
/// the answer to send instead.
async fn faulted_or_caller(ims: &Ims, req: &HttpRequest) -> Result<(String, Vec<String>), Box<HttpResponse>> {
    if let Some(res) = faulted(ims, req).await {
        return Err(Box::new(res));
    }
    caller(req)
}

async fn organizations(ims: web::Data<Ims>, req: HttpRequest) -> HttpResponse {
    let (user_id, _) = match faulted_or_caller(&ims, &req).await {
        Ok(c) => c,
        Err(res) => return *res,
    };
    let memberships: Vec<(String, Vec<String>)> = match world::user(&user_id) {
        Some(user) => user
            .memberships
            .iter()
            .map(|(org_id, groups)| {
                let groups = ims
                    .faults
                    .groups_of(user.id, org_id)
                    .unwrap_or_else(|| groups.iter().map(|g| (*g).to_owned()).collect());
                ((*org_id).to_owned(), groups)
            })
            .collect(),
        // Outside the world (a technical account): the orgs a test gave it groups in.
        None => ims.faults.orgs_given_to(&user_id),
    };
    let orgs: Vec<Value> = memberships
        .iter()
        .filter_map(|(org_id, groups)| {
            let org = world::org(org_id)?;
            let (ident, auth_src) = org.id.split_once('@')?;
            let name = ims.faults.org_name(org.id).unwrap_or_else(|| org.name.to_owned());
            Some(json!({
                "orgRef": {"ident": ident, "authSrc": auth_src},
                "orgName": name,
                "orgType": org.org_type,
                "countryCode": "US",
                "groups": groups.iter().map(|g| g.as_str()).map(|g| json!({
                    "groupName": group_name(g),
                    "role": "GRP_MEMBER",
                    "ident": g,
                    "groupType": "LICENSE",
                    "groupDisplayName": group_name(g),
                })).collect::<Vec<_>>(),
            }))
        })
        .collect();
    HttpResponse::Ok().json(orgs)
}

fn group_name(ident: &str) -> &'static str {
    match ident {
        world::ACME_ADMIN_GROUP | world::OTHER_ADMIN_GROUP => "AEM Administrators",
        world::ACME_USERS_GROUP => "AEM Users",
        _ => "Group",
    }
}

async fn profile(ims: web::Data<Ims>, req: HttpRequest) -> HttpResponse {
    let (user_id, scopes) = match faulted_or_caller(&ims, &req).await {
        Ok(c) => c,
        Err(res) => return *res,
    };
    if let Some(body) = ims.faults.profile_body() {
        return HttpResponse::Ok().json(body);
    }
    let Some(user) = world::user(&user_id) else {
        return HttpResponse::Ok().json(json!({"userId": user_id, "account_type": "type1"}));
    };
    let mut body = json!({
        "userId": user.id,
        "account_type": user.account_type,
        "email": user.email,
        "name": user.name,
        "serviceAccounts": if user.free_cc_service_account {
            json!([{"serviceCode": "creative_cloud", "serviceStatus": "ACTIVE"}])
        } else {
            json!([])
        },
    });
    // IMS includes the product contexts only for tokens with this scope.
    if scopes
        .iter()
        .any(|s| s == "additional_info.projectedProductContext")
    {
        body["projectedProductContext"] = user
            .entitlements
            .iter()
            .map(|e| json!({"prodCtx": {
                "serviceCode": e.service_code, "owningEntity": e.org, "statusCode": e.status,
                "label": if e.service_code == "creative_cloud" { "Creative Cloud All Apps" } else { "Other" },
            }}))
            .collect::<Vec<_>>()
            .into();
    }
    HttpResponse::Ok().json(body)
}

#[derive(Deserialize)]
struct TokenRequest {
    user_id: Option<String>,
    client_id: String,
    #[serde(default)]
    scope: String,
}

/// Development convenience: mints a token for any user of the world and any client.
async fn token(body: web::Either<web::Json<TokenRequest>, web::Form<TokenRequest>>) -> HttpResponse {
    let req = body.into_inner();
    let scopes: Vec<&str> = req
        .scope
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut spec = TokenSpec::service(&req.client_id, &scopes);
    spec.user_id = req.user_id;
    let token = keys::key(super::JWKS_KID).sign(
        &json!({"alg": "RS256", "typ": "JWT", "kid": super::JWKS_KID, "x5u": format!("{}.cer", super::JWKS_KID), "itt": "at"}),
        &spec.claims(),
    );
    HttpResponse::Ok()
        .json(json!({"access_token": token, "token_type": "bearer", "expires_in": spec.expires_in_ms}))
}
