//! Typed extractors: `TenantReader`, `TenantAdmin`, `UserCaller`, all built on `Caller`.
//!
//! Order of checks, the same everywhere: the token (401), then the path (400), then the tenant
//! (404), then the caller's rights in IMS (403).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};

use super::token::{TokenError, VerifiedToken, bearer_token};
use crate::domain::{TenantId, UserId};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{TenantRecord, TenantView};

type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

fn state(req: &HttpRequest) -> Result<AppState, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .map(|d| d.get_ref().clone())
        .ok_or_else(|| ApiError::Internal("application state is missing".into()))
}

/// Runs an async extraction with the request and the application state (`from_request` must
/// return a `'static` future, so both are owned).
fn extract<T, F, Fut>(req: &HttpRequest, run: F) -> BoxFut<T>
where
    F: FnOnce(HttpRequest, AppState) -> Fut + 'static,
    Fut: Future<Output = Result<T, ApiError>> + 'static,
{
    let req = req.clone();
    Box::pin(async move {
        let state = state(&req)?;
        run(req, state).await
    })
}

/// Any caller holding a valid IMS access token of an accepted client.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<VerifiedToken>);

impl Caller {
    async fn from_parts(req: &HttpRequest, state: &AppState) -> Result<Self, ApiError> {
        let mut values = req.headers().get_all(AUTHORIZATION);
        let value = values
            .next()
            .ok_or(ApiError::InvalidToken("a bearer token is required"))?;
        if values.next().is_some() {
            return Err(ApiError::InvalidToken("only one Authorization header is allowed"));
        }
        let raw = value
            .to_str()
            .ok()
            .and_then(bearer_token)
            .ok_or(ApiError::InvalidToken(
                "the Authorization header must be 'Bearer <token>'",
            ))?;
        let token = state.verifier.verify(raw).await.map_err(|e| match e {
            TokenError::Invalid(reason) => ApiError::InvalidToken(reason),
            TokenError::KeysUnavailable => ApiError::ImsUnavailable(5),
        })?;
        crate::telemetry::note_client(req, &token.client_id);
        Ok(Self(token))
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = BoxFut<Self>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract(
            req,
            |req, state| async move { Caller::from_parts(&req, &state).await },
        )
    }
}

fn tenant_from_path(req: &HttpRequest) -> Result<TenantId, ApiError> {
    let raw = req.match_info().get("tenant_id").unwrap_or_default();
    let id = TenantId::parse(raw).map_err(|e| ApiError::invalid(e.to_string()))?;
    crate::telemetry::note_tenant(req, id.as_str());
    Ok(id)
}

/// Whether the token's user is in `tenant`'s home org (and, for `admin`, in one of its admin groups),
/// as IMS lists the user's orgs for this very token.
async fn member_of_home_org(
    state: &AppState,
    token: &VerifiedToken,
    tenant: &TenantRecord,
    admin: bool,
) -> Result<bool, ApiError> {
    let orgs = state
        .ims
        .organizations(&token.bearer, token.remaining(), false)
        .await?;
    Ok(orgs.iter().any(|o| {
        o.org_id == tenant.home_org
            && (!admin || o.group_idents.iter().any(|g| tenant.admin_groups.contains(g)))
    }))
}

/// May read the tenant's connection: an integration client with the read scope, or a member of
/// the tenant's home org. Carries the tenant and its active connection, read in one query.
#[derive(Debug)]
pub struct TenantReader {
    /// The caller.
    pub caller: Caller,
    /// The tenant and its active connection.
    pub view: TenantView,
}

impl FromRequest for TenantReader {
    type Error = ApiError;
    type Future = BoxFut<Self>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract(req, |req, state| async move {
            let caller = Caller::from_parts(&req, &state).await?;
            let tenant_id = tenant_from_path(&req)?;
            let view = state
                .store
                .tenant_view(&tenant_id)
                .await?
                .ok_or(ApiError::UnknownTenant)?;
            let token = &caller.0;
            let cfg = &state.config;
            if cfg.integration_client_ids.iter().any(|c| *c == token.client_id) {
                if !token.has_scope(&cfg.read_scope) {
                    return Err(ApiError::InsufficientScope(cfg.read_scope.clone()));
                }
                return Ok(Self { caller, view });
            }
            if token.user_id.is_none() {
                return Err(ApiError::Forbidden(
                    "this client may not read tenants' connections",
                ));
            }
            if !member_of_home_org(&state, token, &view.tenant, false).await? {
                return Err(ApiError::Forbidden(
                    "the caller is not a member of this tenant's org",
                ));
            }
            Ok(Self { caller, view })
        })
    }
}

/// An administrator of the tenant: a user token with the admin scope whose user is in one of the
/// tenant's administrator groups of its home org. An admin of any other org is refused.
#[derive(Debug)]
pub struct TenantAdmin {
    /// The caller.
    pub caller: Caller,
    /// The administrator.
    pub user_id: UserId,
    /// The tenant.
    pub tenant: TenantRecord,
}

impl FromRequest for TenantAdmin {
    type Error = ApiError;
    type Future = BoxFut<Self>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract(req, |req, state| async move {
            let caller = Caller::from_parts(&req, &state).await?;
            let tenant_id = tenant_from_path(&req)?;
            let token = &caller.0;
            let Some(user_id) = token.user_id.clone() else {
                return Err(ApiError::Forbidden("an administrator's user token is required"));
            };
            if !token.has_scope(&state.config.admin_scope) {
                return Err(ApiError::InsufficientScope(state.config.admin_scope.clone()));
            }
            let tenant = state
                .store
                .tenant_view(&tenant_id)
                .await?
                .ok_or(ApiError::UnknownTenant)?
                .tenant;
            if !member_of_home_org(&state, token, &tenant, true).await? {
                return Err(ApiError::Forbidden(
                    "the caller is not an administrator of this tenant",
                ));
            }
            Ok(Self {
                caller,
                user_id,
                tenant,
            })
        })
    }
}

/// A user token whose user is the `{user_id}` of the path (or the path says `me`).
#[derive(Debug)]
pub struct UserCaller {
    /// The caller.
    pub caller: Caller,
    /// The user (from the token, never from the path).
    pub user_id: UserId,
}

impl FromRequest for UserCaller {
    type Error = ApiError;
    type Future = BoxFut<Self>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract(req, |req, state| async move {
            let caller = Caller::from_parts(&req, &state).await?;
            let raw = req.match_info().get("user_id").unwrap_or_default();
            let path_user = if raw == "me" {
                None
            } else {
                Some(UserId::parse(raw).map_err(|e| ApiError::invalid(e.to_string()))?)
            };
            let Some(user_id) = caller.0.user_id.clone() else {
                return Err(ApiError::Forbidden("a user token is required"));
            };
            if path_user.is_some_and(|p| p != user_id) {
                return Err(ApiError::Forbidden("a user may list only their own orgs"));
            }
            Ok(Self { caller, user_id })
        })
    }
}
