//! IMS's formats (`docs/ims.md`) and what the service keeps of them.

use serde::Deserialize;

use super::ImsError;
use crate::domain::{OrgId, UserId};

/// One org from `/ims/organizations/v6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImsOrg {
    /// `ident@authSrc`.
    pub org_id: OrgId,
    /// `orgName`.
    pub name: String,
    /// `orgType`.
    pub org_type: String,
    /// The idents of the caller's groups in this org.
    pub group_idents: Vec<String>,
}

/// The part of `/ims/profile/v1` the service relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImsProfile {
    /// `userId`: always present and of the user-id form (a profile that does not say whose it is
    /// is refused as unusable).
    pub user_id: UserId,
    /// `projectedProductContext[].prodCtx`.
    pub product_contexts: Vec<ProductContext>,
}

/// One `prodCtx` of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProductContext {
    /// `serviceCode`.
    #[serde(rename = "serviceCode", default)]
    pub service_code: String,
    /// `owningEntity`: the org that owns the entitlement.
    #[serde(rename = "owningEntity", default)]
    pub owning_entity: String,
    /// `statusCode`.
    #[serde(rename = "statusCode", default)]
    pub status_code: String,
}

impl ImsProfile {
    /// Whether the profile holds an active entitlement in `org` with one of `service_codes`.
    /// Only `projectedProductContext` counts: `serviceAccounts` shows free accounts as active.
    pub fn entitled_in(&self, org: &OrgId, service_codes: &[String]) -> bool {
        self.product_contexts.iter().any(|p| {
            p.owning_entity == org.as_str()
                && p.status_code == "ACTIVE"
                && service_codes.contains(&p.service_code)
        })
    }
}

/// A JSON Web Key as `/ims/keys` lists it (only RSA keys are used).
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    /// Key id.
    #[serde(default)]
    pub kid: String,
    /// Key type; only `RSA` is used.
    #[serde(default)]
    pub kty: String,
    /// `use`, when given, must be `sig`.
    #[serde(rename = "use", default)]
    pub key_use: Option<String>,
    /// `alg`, when given, must be `RS256`.
    #[serde(default)]
    pub alg: Option<String>,
    /// Modulus, base64url.
    #[serde(default)]
    pub n: String,
    /// Exponent, base64url.
    #[serde(default)]
    pub e: String,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct RawOrg {
    #[serde(rename = "orgRef")]
    org_ref: RawOrgRef,
    #[serde(rename = "orgName", default)]
    org_name: String,
    #[serde(rename = "orgType", default)]
    org_type: String,
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Deserialize)]
struct RawOrgRef {
    ident: String,
    #[serde(rename = "authSrc")]
    auth_src: String,
}

#[derive(Deserialize)]
struct RawGroup {
    #[serde(default)]
    ident: serde_json::Value,
}

#[derive(Deserialize)]
struct RawProfile {
    #[serde(rename = "userId", default)]
    user_id: Option<String>,
    #[serde(rename = "projectedProductContext", default)]
    projected: Vec<RawProjected>,
}

#[derive(Deserialize)]
struct RawProjected {
    #[serde(rename = "prodCtx")]
    prod_ctx: ProductContext,
}

/// The keys of a `/ims/keys` body.
pub(super) fn parse_keys(body: &[u8]) -> Result<Vec<Jwk>, ImsError> {
    let set: JwkSet =
        serde_json::from_slice(body).map_err(|e| ImsError::BadResponse(format!("keys: {e}")))?;
    Ok(set.keys)
}

/// The orgs of a `/ims/organizations/v6` body.
pub(super) fn parse_orgs(body: &[u8]) -> Result<Vec<ImsOrg>, ImsError> {
    let raw: Vec<RawOrg> =
        serde_json::from_slice(body).map_err(|e| ImsError::BadResponse(format!("organizations: {e}")))?;
    Ok(raw
        .into_iter()
        .filter_map(|o| {
            // An org whose id is not of the documented form cannot be connected; skip it.
            let org_id = OrgId::from_org_ref(&o.org_ref.ident, &o.org_ref.auth_src)?;
            let group_idents = o
                .groups
                .into_iter()
                .filter_map(|g| match g.ident {
                    serde_json::Value::String(s) => Some(s),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect();
            Some(ImsOrg {
                org_id,
                name: clean_text(&o.org_name),
                org_type: clean_text(&o.org_type),
                group_idents,
            })
        })
        .collect())
}

/// Whether `c` is a character no stored or shown text may hold: a control character (Unicode
/// category Cc: C0, DEL, C1; NUL, which PostgreSQL refuses in text, and ESC, which starts a
/// terminal's escape sequences, among them), a format character (Cf: the bidirectional controls,
/// which reorder what is displayed around them, zero-width spaces and joiners, the byte order mark:
/// invisible, so two names that look alike differ), or a line or paragraph separator (Zl, Zp).
pub fn is_unsafe_char(c: char) -> bool {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    matches!(
        get_general_category(c),
        G::Control | G::Format | G::LineSeparator | G::ParagraphSeparator
    )
}

/// Text from IMS (an org's name and type) as the service keeps it: whitespace among the unsafe
/// characters (tab, line breaks, the line and paragraph separators) becomes a space, the others
/// ([`is_unsafe_char`]) are dropped.
pub fn clean_text(raw: &str) -> String {
    raw.chars()
        .filter_map(|c| match c {
            c if !is_unsafe_char(c) => Some(c),
            c if c.is_whitespace() => Some(' '),
            _ => None,
        })
        .collect()
}

/// The profile of a `/ims/profile/v1` body.
pub(super) fn parse_profile(body: &[u8]) -> Result<ImsProfile, ImsError> {
    let raw: RawProfile =
        serde_json::from_slice(body).map_err(|e| ImsError::BadResponse(format!("profile: {e}")))?;
    // A profile that does not say whose it is proves nothing about anyone's entitlements: an IMS
    // error, not an answer about this user.
    let user_id = raw
        .user_id
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ImsError::BadResponse("profile: no userId".to_owned()))?;
    let user_id = UserId::parse(&user_id).map_err(|e| ImsError::BadResponse(format!("profile: {e}")))?;
    Ok(ImsProfile {
        user_id,
        product_contexts: raw.projected.into_iter().map(|p| p.prod_ctx).collect(),
    })
}

/// Whether `user` (by the profile IMS returned for the token) is who the token says; a mismatch
/// means IMS and the token disagree, which the service treats as a rejected token.
pub fn profile_matches(profile: &ImsProfile, user: &UserId) -> bool {
    profile.user_id == *user
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_profile_says_whose_it_is_as_a_user_id() {
        let profile = parse_profile(br#"{"userId": "ABCDEF0123456789ABCDEF01@AdobeID"}"#).unwrap();
        assert!(profile_matches(
            &profile,
            &UserId::parse("ABCDEF0123456789ABCDEF01@AdobeID").unwrap()
        ));
        for body in [
            &br#"{}"#[..],
            br#"{"userId": ""}"#,
            br#"{"userId": "no at sign"}"#,
        ] {
            assert!(matches!(parse_profile(body), Err(ImsError::BadResponse(_))));
        }
    }

    #[test]
    fn org_names_lose_control_characters() {
        assert_eq!(
            clean_text("Acme\u{0}\u{1b}[2J Creative\t\r\nX"),
            "Acme[2J Creative   X"
        );
        assert_eq!(clean_text("\u{9b}31m\u{7f}\u{202e}Acme"), "31mAcme");
        assert_eq!(clean_text("Équipe Créative 東京"), "Équipe Créative 東京");
        // Invisible: zero-width space, non-joiner, joiner, word joiner, byte order mark, soft
        // hyphen; line and paragraph separators break lines like a newline does.
        assert_eq!(
            clean_text("A\u{200b}c\u{200c}m\u{200d}e\u{2060}\u{feff}\u{ad}\u{2028}Creative\u{2029}X"),
            "Acme Creative X"
        );
        let body = br#"[{"orgRef":{"ident":"C0FFEE00C0FFEE00C0FFEE00","authSrc":"AdobeOrg"},"orgName":"A\u0000B\u001b]0;x\u0007","orgType":"Ent\u0085erprise"}]"#;
        let orgs = parse_orgs(body).unwrap();
        assert_eq!(orgs[0].name, "AB]0;x");
        assert_eq!(orgs[0].org_type, "Ent erprise");
    }
}
