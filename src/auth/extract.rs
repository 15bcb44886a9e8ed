//! Typed extractors: `TenantReader`, `TenantAdmin`, `UserCaller`, all built on `Caller`.
//!
//! Order of checks, the same everywhere: the token (401), then the path (400), then for a user the
//! IMS budget (429) and the user's orgs from IMS, and only then the tenant and the caller's rights
//! in it (403). Only an integration learns that a tenant is not registered (404 `unknown-tenant`):
//! to every other caller a tenant they may not see is 403 `forbidden`, registered or not, with the
//! same detail, after the same work (the budget spent, IMS asked), so neither the answer nor the
//! budget tells which tenants exist. Preconditions (`If-Match`) are the handlers', read only once
//! the caller may act. A service token (no `user_id`, or a technical account's) is never a user,
//! whatever groups IMS lists for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header::{AUTHORIZATION, IF_NONE_MATCH};
use actix_web::{FromRequest, HttpRequest, web};

use super::token::{TokenError, VerifiedToken, bearer_token};
use crate::domain::{TenantId, UserId};
use crate::error::{ApiError, RetryAfter};
use crate::ims::{Freshness, ImsOrg};
use crate::state::AppState;
use crate::store::TenantView;
use crate::watch::WatchGuard;

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
pub struct Caller {
    /// The caller's token, verified.
    pub token: Arc<VerifiedToken>,
}

impl Caller {
    /// Whom per-caller limits (the IMS budget, the cap on held requests) count: the user, or for
    /// a service token its client.
    pub fn key(&self) -> String {
        caller_key(&self.token)
    }

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
            TokenError::KeysUnavailable(wait) => ApiError::ImsUnavailable(wait),
        })?;
        crate::telemetry::note_client(req, &token.client_id);
        Ok(Self { token })
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

/// Takes one request from the caller's IMS budget (`CCC_IMS_RATE_PER_MINUTE`): the user's, or for a
/// service token its client's. Called before the first IMS call of the request, so a refused
/// request (429) has asked IMS nothing and changed nothing.
fn spend_ims_budget(state: &AppState, token: &VerifiedToken) -> Result<(), ApiError> {
    state.ims_limiter.check(&caller_key(token)).map_err(|wait| {
        tracing::info!(
            wait_ms = wait.as_millis() as u64,
            "IMS-bound request over the caller's rate limit"
        );
        ApiError::RateLimited(RetryAfter::after(wait))
    })
}

/// Whom per-caller limits (the IMS budget, the watcher cap) count: the user, or for a service
/// token its client.
fn caller_key(token: &VerifiedToken) -> String {
    match &token.user_id {
        Some(user) => format!("user:{user}"),
        None => format!("client:{}", token.client_id),
    }
}

/// The user's orgs as IMS lists them for this very token (cached up to a minute). A lookup that
/// must ask IMS spends one request of the caller's IMS budget first; one answered from memory (the
/// cached org list, or IMS's recent refusal of the token) spends nothing. Asked before the tenant
/// is looked up, so a tenant that is not registered costs the same as one that is.
async fn cached_orgs(state: &AppState, token: &VerifiedToken) -> Result<Arc<Vec<ImsOrg>>, ApiError> {
    if !state.ims.organizations_known(&token.bearer) {
        spend_ims_budget(state, token)?;
    }
    // Boxed: an IMS call is kilobytes of future state, and integrations (the hot path) never
    // make it; inline, every read's extractor would allocate it.
    Ok(Box::pin(
        state
            .ims
            .organizations(&token.bearer, token.remaining(), Freshness::Cached),
    )
    .await?)
}

/// The tenant and its active connection if `orgs` put the caller in its home org (and, for
/// `admin`, in one of its administrator groups); 403 `forbidden` with `refusal` otherwise, whether
/// the tenant is registered or not.
async fn view_as_member(
    state: &AppState,
    tenant_id: &TenantId,
    orgs: &[ImsOrg],
    admin: bool,
    refusal: &'static str,
) -> Result<TenantView, ApiError> {
    match state.store.tenant_view(tenant_id).await? {
        Some(view) if in_home_org(orgs, &view.tenant, admin) => Ok(view),
        _ => Err(ApiError::Forbidden(refusal)),
    }
}

/// Whether `orgs` (a user's orgs from IMS) put the user in `tenant`'s home org (and, for `admin`,
/// in one of its administrator groups).
fn in_home_org(orgs: &[ImsOrg], tenant: &crate::store::TenantRecord, admin: bool) -> bool {
    orgs.iter().any(|o| {
        o.org_id == tenant.home_org
            && (!admin || o.group_idents.iter().any(|g| tenant.admin_groups.contains(g)))
    })
}

/// May read the tenant's connection: a service token of an integration client with the read
/// scope, or a member of the tenant's home org (any user token, whatever its client). Carries the
/// tenant and its active connection, read in one query, and for a request that may watch
/// (`wait` and `If-None-Match`) its place among the watchers, taken before that read: a change
/// committed after the read wakes it.
#[derive(Debug)]
pub struct TenantReader {
    /// The caller.
    pub caller: Caller,
    /// The tenant and its active connection.
    pub view: TenantView,
    /// Whether the caller reads as an integration (which may learn that a tenant is unknown).
    pub integration: bool,
    /// The watch registered before the read, when the request may watch and no cap was reached.
    pub watch: Option<WatchGuard>,
}

/// Whether the request may watch: `wait` in the query and an `If-None-Match` (the handler decides
/// whether it does).
fn may_watch(req: &HttpRequest) -> bool {
    req.headers().contains_key(IF_NONE_MATCH)
        && req
            .query_string()
            .split('&')
            .any(|pair| pair.split('=').next() == Some("wait"))
}

/// Why a caller who may not see the tenant is refused (403), whether it is registered or not.
pub const NOT_A_MEMBER: &str = "the caller may not see this tenant";

impl FromRequest for TenantReader {
    type Error = ApiError;
    type Future = BoxFut<Self>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract(req, |req, state| async move {
            let caller = Caller::from_parts(&req, &state).await?;
            let tenant_id = tenant_from_path(&req)?;
            let token = &caller.token;
            let cfg = &state.config;
            // Over a cap, or stopping: no place, and the request answers as a plain read.
            let watch = if may_watch(&req) {
                state.watchers.watch(&tenant_id, &caller_key(token))
            } else {
                None
            };
            // Integration rights need a service token of an integration client: a person signed in
            // to that client is judged as a user below.
            if is_integration(cfg, token) {
                if !token.has_scope(&cfg.read_scope) {
                    return Err(ApiError::InsufficientScope(cfg.read_scope.clone()));
                }
                let view = state
                    .store
                    .tenant_view(&tenant_id)
                    .await?
                    .ok_or(ApiError::UnknownTenant)?;
                return Ok(Self {
                    caller,
                    view,
                    integration: true,
                    watch,
                });
            }
            if token.is_service() {
                return Err(ApiError::Forbidden(
                    "this client may not read tenants' connections",
                ));
            }
            let orgs = cached_orgs(&state, token).await?;
            let view = view_as_member(&state, &tenant_id, &orgs, false, NOT_A_MEMBER).await?;
            Ok(Self {
                caller,
                view,
                integration: false,
                watch,
            })
        })
    }
}

/// Whether the token is an integration's: a service token of a configured integration client.
fn is_integration(cfg: &crate::config::Config, token: &VerifiedToken) -> bool {
    token.is_service() && cfg.integration_client_ids.contains(&token.client_id)
}

impl TenantReader {
    /// What this caller is answered when the tenant is not (or no longer) registered: 404
    /// `unknown-tenant` to an integration, 403 `forbidden` to anyone else.
    pub fn unknown_tenant(integration: bool) -> ApiError {
        if integration {
            ApiError::UnknownTenant
        } else {
            ApiError::Forbidden(NOT_A_MEMBER)
        }
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
    /// The tenant and its active connection, read once the caller was known to be an
    /// administrator.
    pub view: TenantView,
}

/// The checks every administrator passes before IMS is asked: a person's token (403; a service
/// token, technical accounts' included, is never an administrator) with the admin scope (403)
/// naming a well-formed tenant (400). Nothing here depends on the tenant being registered.
fn admin_token(req: &HttpRequest, caller: &Caller, state: &AppState) -> Result<(TenantId, UserId), ApiError> {
    let tenant_id = tenant_from_path(req)?;
    let token = &caller.token;
    let user_id = match &token.user_id {
        Some(user) if !token.is_service() => user.clone(),
        _ => return Err(ApiError::Forbidden("an administrator's user token is required")),
    };
    if !token.has_scope(&state.config.admin_scope) {
        return Err(ApiError::InsufficientScope(state.config.admin_scope.clone()));
    }
    Ok((tenant_id, user_id))
}

/// Why a caller who is not an administrator of the tenant is refused (403).
pub const NOT_AN_ADMIN: &str = "the caller is not an administrator of this tenant";

impl FromRequest for TenantAdmin {
    type Error = ApiError;
    type Future = BoxFut<Self>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract(req, |req, state| async move {
            let caller = Caller::from_parts(&req, &state).await?;
            let (tenant_id, user_id) = admin_token(&req, &caller, &state)?;
            let orgs = cached_orgs(&state, &caller.token).await?;
            let view = view_as_member(&state, &tenant_id, &orgs, true, NOT_AN_ADMIN).await?;
            Ok(Self {
                caller,
                user_id,
                view,
            })
        })
    }
}

/// A would-be administrator of the tenant, for the writes (switch, disconnect): the token, the
/// scope and the caller's IMS budget are checked, nothing about the tenant. The writes act on what
/// IMS says now, so they fetch the caller's orgs fresh (one IMS call, where a cached check first
/// would be two, and would let a removed administrator write for up to a minute) and then
/// [`AdminCandidate::admit`] reads the tenant and judges the caller by that list. Only an admitted
/// administrator's preconditions are looked at.
#[derive(Debug)]
pub struct AdminCandidate {
    /// The caller.
    pub caller: Caller,
    /// The user, an administrator once admitted.
    pub user_id: UserId,
    /// The tenant named in the path.
    pub tenant_id: TenantId,
}

impl AdminCandidate {
    /// The administrator, with the tenant and its active connection as read now, if `orgs` (the
    /// caller's orgs, fresh from IMS) put the caller in one of the tenant's administrator groups of
    /// its home org; 403 `forbidden` otherwise, registered or not.
    pub async fn admit(self, state: &AppState, orgs: &[ImsOrg]) -> Result<TenantAdmin, ApiError> {
        let view = view_as_member(state, &self.tenant_id, orgs, true, NOT_AN_ADMIN).await?;
        Ok(TenantAdmin {
            caller: self.caller,
            user_id: self.user_id,
            view,
        })
    }
}

impl FromRequest for AdminCandidate {
    type Error = ApiError;
    type Future = BoxFut<Self>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract(req, |req, state| async move {
            let caller = Caller::from_parts(&req, &state).await?;
            let (tenant_id, user_id) = admin_token(&req, &caller, &state)?;
            // Switches and disconnects ask IMS afresh each time: they spend the caller's IMS
            // budget (before any IMS call, and before the tenant is looked up). The history
            // (TenantAdmin) uses the per-token org cache.
            spend_ims_budget(&state, &caller.token)?;
            Ok(Self {
                caller,
                user_id,
                tenant_id,
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
            // A technical account is not a person: it has no orgs of "its own" to pick from.
            let user_id = match &caller.token.user_id {
                Some(user) if !caller.token.is_service() => user.clone(),
                _ => return Err(ApiError::Forbidden("a user token is required")),
            };
            if path_user.is_some_and(|p| p != user_id) {
                return Err(ApiError::Forbidden("a user may list only their own orgs"));
            }
            spend_ims_budget(&state, &caller.token)?;
            Ok(Self { caller, user_id })
        })
    }
}

/// Why a caller who is not an integration is refused the listing and the change feed (403).
pub const NOT_AN_INTEGRATION: &str = "only an integration's service token may read every tenant";

/// An integration: a service token of an integration client (`CCC_INTEGRATION_CLIENT_IDS`) with the
/// read scope. The only caller of the change feed and the listing of every tenant.
#[derive(Debug)]
pub struct Integration {
    /// The caller.
    pub caller: Caller,
}

impl FromRequest for Integration {
    type Error = ApiError;
    type Future = BoxFut<Self>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract(req, |req, state| async move {
            let caller = Caller::from_parts(&req, &state).await?;
            let token = &caller.token;
            let cfg = &state.config;
            if !is_integration(cfg, token) {
                return Err(ApiError::Forbidden(NOT_AN_INTEGRATION));
            }
            if !token.has_scope(&cfg.read_scope) {
                return Err(ApiError::InsufficientScope(cfg.read_scope.clone()));
            }
            Ok(Self { caller })
        })
    }
}

/// The provisioning system: a service token (no `user_id`, or a technical account's) of a client in
/// `CCC_PROVISIONING_CLIENT_IDS` with the provision scope (`CCC_PROVISIONING_SCOPE`). The only
/// caller of `/tenants`; with no provisioning client configured, no one is (403).
#[derive(Debug)]
pub struct Provisioner {
    /// The caller.
    pub caller: Caller,
    /// Who it is in the history and the feed: `provisioning:<client_id>`.
    pub actor: crate::domain::Actor,
}

/// Why a caller who is not the provisioning system is refused (403).
pub const NOT_PROVISIONING: &str =
    "only the provisioning system's service token may manage the tenant registry";

impl FromRequest for Provisioner {
    type Error = ApiError;
    type Future = BoxFut<Self>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract(req, |req, state| async move {
            let caller = Caller::from_parts(&req, &state).await?;
            // The path's tenant id, where the route has one, is checked before the caller's
            // rights, as everywhere.
            if req.match_info().get("tenant_id").is_some() {
                tenant_from_path(&req)?;
            }
            let token = &caller.token;
            let cfg = &state.config;
            if !(token.is_service() && cfg.provisioning_client_ids.contains(&token.client_id)) {
                return Err(ApiError::Forbidden(NOT_PROVISIONING));
            }
            if !token.has_scope(&cfg.provisioning_scope) {
                return Err(ApiError::InsufficientScope(cfg.provisioning_scope.clone()));
            }
            let actor = crate::domain::Actor::provisioning(&token.client_id);
            Ok(Self { caller, actor })
        })
    }
}
