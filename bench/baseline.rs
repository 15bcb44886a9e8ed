//! The benchmark's ceiling: a bare actix-web handler that does the same RS256 verification as the
//! service (same jsonwebtoken `Validation`, keys from the same JWKS) and returns a fixed body.
//! No database, no cache, no middleware: what any implementation here can reach at most.
//!
//! `cargo run --release --example bench_baseline -- <listen> <jwks-url>`

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    validation: Validation,
}

async fn handler(req: HttpRequest, keys: web::Data<Arc<Keys>>) -> HttpResponse {
    let Some(token) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return HttpResponse::Unauthorized().finish();
    };
    let Ok(header) = jsonwebtoken::decode_header(token) else {
        return HttpResponse::Unauthorized().finish();
    };
    let Some(key) = header.kid.as_deref().and_then(|k| keys.by_kid.get(k)) else {
        return HttpResponse::Unauthorized().finish();
    };
    match jsonwebtoken::decode::<serde_json::Value>(token, key, &keys.validation) {
        Ok(_) => HttpResponse::Ok().content_type("application/json").body(
            r#"{"tenant_id":"acme-prod","org_id":"C0FFEE00C0FFEE00C0FFEE00@AdobeOrg","org_name":"Acme Creative","connected_by":"A11CE000000000000000FED0@1a2b3c4d5e","connected_at":"2026-11-24T03:00:00Z","revision":7}"#,
        ),
        Err(_) => HttpResponse::Unauthorized().finish(),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (listen, jwks_url) = match args.as_slice() {
        [_, listen, jwks] => (listen.clone(), jwks.clone()),
        _ => {
            eprintln!("usage: bench_baseline <listen> <jwks-url>");
            std::process::exit(2);
        }
    };
    let jwks: serde_json::Value = reqwest::get(&jwks_url)
        .await
        .and_then(|r| r.error_for_status())
        .map_err(std::io::Error::other)?
        .json()
        .await
        .map_err(std::io::Error::other)?;
    let mut by_kid = HashMap::new();
    for k in jwks["keys"].as_array().into_iter().flatten() {
        if let (Some(kid), Some(n), Some(e)) = (k["kid"].as_str(), k["n"].as_str(), k["e"].as_str())
            && let Ok(key) = DecodingKey::from_rsa_components(n, e)
        {
            by_kid.insert(kid.to_owned(), key);
        }
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let keys = Arc::new(Keys { by_kid, validation });
    HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(keys.clone()))
            .route(
                "/tenants/{tenant_id}/creative-cloud-connection",
                web::get().to(handler),
            )
            .route("/readyz", web::get().to(HttpResponse::Ok))
    })
    .bind(listen)?
    .run()
    .await
}
