//! `/users/{user_id}/orgs`: the org picker.

use actix_web::{HttpResponse, route, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::UserCaller;
use crate::domain::{OrgId, UserId};
use crate::error::ApiError;
use crate::ims::Freshness;
use crate::state::AppState;

/// One org the user has access to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserOrg {
    /// The org id.
    pub org_id: OrgId,
    /// Its name.
    #[schema(example = "Acme Creative")]
    pub org_name: String,
    /// `Enterprise`, `Team`, ... as IMS says.
    #[schema(example = "Enterprise")]
    pub org_type: String,
    /// Whether this user holds an active Creative Cloud entitlement in it (so may connect it).
    pub creative_cloud_entitled: bool,
}

/// Every org the user has access to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "user_id": "ABCDEF0123456789ABCDEF01@AdobeID",
    "orgs": [{"org_id": "0123456789ABCDEF01234567@AdobeOrg", "org_name": "Acme Creative",
              "org_type": "Enterprise", "creative_cloud_entitled": true}]
}))]
pub struct UserOrgs {
    /// The user (from the token).
    pub user_id: UserId,
    /// The orgs, as IMS lists them.
    pub orgs: Vec<UserOrg>,
}

/// List the caller's own orgs, and which have Creative Cloud for them.
///
/// `user_id` is `me` or the caller's own id; any other user's orgs are refused.
#[utoipa::path(
    tag = "orgs",
    params(("user_id" = String, Path, description = "`me`, or the caller's own IMS user id", example = "me")),
    responses((status = 200, description = "The caller's orgs", body = UserOrgs)),
    security(("bearer" = [])),
)]
#[route("/users/{user_id}/orgs", method = "GET", method = "HEAD")]
pub async fn get_user_orgs(user: UserCaller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let token = &user.caller.token;
    let (orgs, profile) = state
        .ims
        .orgs_and_profile(&token.bearer, token.remaining(), Freshness::Cached)
        .await;
    let (orgs, profile) = (orgs?, profile?);
    let codes = &state.config.cc_service_codes;
    let orgs = orgs
        .iter()
        .map(|o| UserOrg {
            org_id: o.org_id.clone(),
            org_name: o.name.clone(),
            org_type: o.org_type.clone(),
            creative_cloud_entitled: profile.entitled_in(&o.org_id, codes),
        })
        .collect();
    Ok(HttpResponse::Ok().json(UserOrgs {
        user_id: user.user_id,
        orgs,
    }))
}
