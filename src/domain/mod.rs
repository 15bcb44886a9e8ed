//! Identifier newtypes, parsed once at the edge so the rest of the code cannot hold a bad one.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidId {
    /// Which field or parameter held the bad value.
    pub field: &'static str,
    /// What is wrong with it (never echoes the value itself).
    pub reason: &'static str,
}

/// An AEM Assets tenant id: 1 to 128 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[schema(value_type = String, pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", example = "acme-prod")]
#[serde(transparent)]
#[derive(sea_orm::DeriveValueType)]
#[sea_orm(value_type = "String")]
pub struct TenantId(String);

impl TenantId {
    /// Parses a tenant id, refusing anything outside the documented alphabet.
    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        let bad = |reason| InvalidId {
            field: "tenant_id",
            reason,
        };
        let bytes = raw.as_bytes();
        if bytes.is_empty() || bytes.len() > 128 {
            return Err(bad("must be 1 to 128 characters"));
        }
        if !bytes[0].is_ascii_alphanumeric() {
            return Err(bad("must start with a letter or digit"));
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(bad("may hold only A-Z a-z 0-9 . _ -"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as stored and sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An Adobe IMS organization id: 24 hexadecimal characters followed by `@AdobeOrg`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[schema(value_type = String, pattern = r"^[0-9A-Fa-f]{24}@AdobeOrg$", example = "0123456789ABCDEF01234567@AdobeOrg")]
#[serde(transparent)]
#[derive(sea_orm::DeriveValueType)]
#[sea_orm(value_type = "String")]
pub struct OrgId(String);

impl OrgId {
    /// Parses an org id. Compared exactly afterwards: ids are case-sensitive.
    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        let bad = |reason| InvalidId {
            field: "org_id",
            reason,
        };
        let Some(ident) = raw.strip_suffix("@AdobeOrg") else {
            return Err(bad("must end with @AdobeOrg"));
        };
        if ident.len() != 24 || !ident.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("must be 24 hexadecimal characters followed by @AdobeOrg"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Builds the id IMS uses from an `orgRef` (`ident@authSrc`), if it is well formed.
    pub fn from_org_ref(ident: &str, auth_src: &str) -> Option<Self> {
        Self::parse(&format!("{ident}@{auth_src}")).ok()
    }

    /// The id as stored and sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An IMS user id (the `user_id` claim) exactly as IMS issued it. Two ids that differ are two users,
/// whatever their emails: a personal Adobe ID and a federated ID are never the same person here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[schema(value_type = String, example = "ABCDEF0123456789ABCDEF01@AdobeID")]
#[serde(transparent)]
#[derive(sea_orm::DeriveValueType)]
#[sea_orm(value_type = "String")]
pub struct UserId(String);

impl UserId {
    /// Parses a user id: `<guid>@<authSrc>`, printable ASCII without spaces or `/`, at most 255 bytes.
    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        let bad = |reason| InvalidId {
            field: "user_id",
            reason,
        };
        if raw.is_empty() || raw.len() > 255 {
            return Err(bad("must be 1 to 255 characters"));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
            return Err(bad("may hold only printable ASCII without spaces or '/'"));
        }
        match raw.split_once('@') {
            Some((guid, src)) if !guid.is_empty() && !src.is_empty() => Ok(Self(raw.to_owned())),
            _ => Err(bad("must have the form <id>@<authSrc>")),
        }
    }

    /// The id as stored and sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who ended a connection or made a change: an administrator (their IMS user id), an operator of
/// the command line (`cli:<login>`), or the provisioning system (`provisioning:<client_id>`).
/// In the OpenAPI document it is a string (`value_type = Option<String>` where it is used).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// An administrator, through the API.
    User(UserId),
    /// An operator of the command line; holds the whole `cli:<login>` form.
    Operator(String),
    /// A provisioning client over the API; holds the whole `provisioning:<client_id>` form.
    Provisioning(String),
}

/// The prefix of an operator's [`Actor`] id.
const OPERATOR_PREFIX: &str = "cli:";
/// The prefix of a provisioning client's [`Actor`] id.
const PROVISIONING_PREFIX: &str = "provisioning:";

/// `raw` as an actor's name: at most 200 characters, printable ASCII without spaces or `/` (others
/// become `_`); empty becomes `unknown`.
fn actor_name(raw: &str) -> String {
    let clean: String = raw
        .chars()
        .take(200)
        .map(|c| if c.is_ascii_graphic() && c != '/' { c } else { '_' })
        .collect();
    if clean.is_empty() {
        "unknown".to_owned()
    } else {
        clean
    }
}

/// Whether `name` is an actor's name as [`actor_name`] makes them.
fn is_actor_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 200 && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

impl Actor {
    /// The operator `login` as `cli:<login>`. A login outside printable ASCII, or with spaces or
    /// `/`, has those characters replaced by `_`; an empty one becomes `unknown`.
    pub fn operator(login: &str) -> Self {
        Self::Operator(format!("{OPERATOR_PREFIX}{}", actor_name(login)))
    }

    /// The provisioning client `client_id` as `provisioning:<client_id>` (its characters cleaned as
    /// [`Actor::operator`] cleans a login).
    pub fn provisioning(client_id: &str) -> Self {
        Self::Provisioning(format!("{PROVISIONING_PREFIX}{}", actor_name(client_id)))
    }

    /// Parses a stored actor: `cli:<login>`, `provisioning:<client_id>` or an IMS user id.
    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        let bad = InvalidId {
            field: "ended_by",
            reason: "an operator login or client id may hold only printable ASCII without spaces or '/'",
        };
        if let Some(login) = raw.strip_prefix(OPERATOR_PREFIX).filter(|l| l.len() <= 200) {
            return if is_actor_name(login) {
                Ok(Self::Operator(raw.to_owned()))
            } else {
                Err(bad)
            };
        }
        if let Some(client) = raw.strip_prefix(PROVISIONING_PREFIX) {
            return if is_actor_name(client) {
                Ok(Self::Provisioning(raw.to_owned()))
            } else {
                Err(bad)
            };
        }
        UserId::parse(raw).map(Self::User)
    }

    /// The id as stored and sent.
    pub fn as_str(&self) -> &str {
        match self {
            Self::User(u) => u.as_str(),
            Self::Operator(o) | Self::Provisioning(o) => o,
        }
    }
}

impl From<UserId> for Actor {
    fn from(user: UserId) -> Self {
        Self::User(user)
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Actor::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A tenant's administrator groups: 1 to [`AdminGroups::MAX`] IMS group idents (of its home org),
/// each 1 to 128 printable ASCII characters without spaces; a repeated ident is kept once. The
/// commands and the provisioning API take the list through this one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminGroups(Vec<String>);

impl AdminGroups {
    /// The most groups a tenant may list.
    pub const MAX: usize = 100;

    /// Checks a list of group idents.
    pub fn parse(groups: Vec<String>) -> Result<Self, InvalidId> {
        let bad = |reason| InvalidId {
            field: "admin_groups",
            reason,
        };
        if groups.is_empty() {
            return Err(bad("must hold at least one group ident"));
        }
        if groups.len() > Self::MAX {
            return Err(bad("may hold at most 100 group idents"));
        }
        let mut kept: Vec<String> = Vec::with_capacity(groups.len());
        for group in groups {
            if group.is_empty() || group.len() > 128 || !group.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad(
                    "each group ident must be 1 to 128 printable ASCII characters without spaces",
                ));
            }
            if !kept.contains(&group) {
                kept.push(group);
            }
        }
        Ok(Self(kept))
    }

    /// The idents, in the order given.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for AdminGroups {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(Vec::<String>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

macro_rules! id_impls {
    ($($ty:ident),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $ty::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
        impl std::str::FromStr for $ty {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::parse(s)
            }
        }
    )*};
}
id_impls!(TenantId, OrgId, UserId);

// The tenant id is the `tenant` table's primary key, which sea-orm asks to be buildable from an
// auto-incremented number; it never is (ids are given, not generated).
impl sea_orm::TryFromU64 for TenantId {
    fn try_from_u64(_: u64) -> Result<Self, sea_orm::DbErr> {
        Err(sea_orm::DbErr::ConvertFromU64("TenantId"))
    }
}

/// A tenant's revision: bumped by every switch and disconnect; the ETag of its state, the history's
/// cursor and what `If-Match` names. Sent as the plain JSON number (`value_type = i64` where used).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sea_orm::DeriveValueType,
)]
#[serde(transparent)]
pub struct Revision(i64);

impl Revision {
    /// The revision of a tenant just registered, before any connection.
    pub const INITIAL: Self = Self(0);

    /// The revision numbered `n`.
    pub const fn new(n: i64) -> Self {
        Self(n)
    }

    /// Its number.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::str::FromStr for Revision {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// One conditional header of a write (RFC 9110 13.1): `*`, or the revisions its entity tags name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `*`: any current representation (a connection exists).
    Any,
    /// The revisions named; a tag that is not one of ours names none, so an `If-Match` of only such
    /// tags never holds.
    Revisions(Vec<Revision>),
}

impl Condition {
    fn names(&self, revision: Revision) -> bool {
        matches!(self, Self::Revisions(revisions) if revisions.contains(&revision))
    }

    /// As `If-Match` holds for something that exists at `current` or does not exist (`None`):
    /// `*` needs it to exist, a tag to name its version.
    pub fn holds_for(&self, current: Option<Revision>) -> bool {
        match self {
            Self::Any => current.is_some(),
            Self::Revisions(_) => current.is_some_and(|c| self.names(c)),
        }
    }
}

/// What a write requires of the tenant's current state: `If-Match` and `If-None-Match`, judged
/// against the ETag a read answers (the active connection's revision, or without one the tenant's,
/// as a 404 `no-connection` carries it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// `If-Match`: `*` needs a connection; a tag must name the current ETag (strong comparison).
    pub if_match: Option<Condition>,
    /// `If-None-Match`: `*` needs no connection (a first connection only); a tag must not name the
    /// current ETag.
    pub if_none_match: Option<Condition>,
}

impl Preconditions {
    /// No condition: always holds.
    pub const NONE: Self = Self {
        if_match: None,
        if_none_match: None,
    };

    /// Whether both hold for the current ETag `etag` and whether a connection `exists`.
    pub fn hold(&self, etag: Revision, exists: bool) -> bool {
        let matched = match &self.if_match {
            None => true,
            Some(Condition::Any) => exists,
            Some(tags) => tags.names(etag),
        };
        let none_matched = match &self.if_none_match {
            None => true,
            Some(Condition::Any) => !exists,
            Some(tags) => !tags.names(etag),
        };
        matched && none_matched
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn preconditions_follow_rfc_9110_on_the_current_etag() {
        let rev = |n| Condition::Revisions(vec![Revision::new(n)]);
        let im = |c| Preconditions {
            if_match: Some(c),
            if_none_match: None,
        };
        let inm = |c| Preconditions {
            if_match: None,
            if_none_match: Some(c),
        };
        let (etag, connected, absent) = (Revision::new(3), true, false);
        assert!(Preconditions::NONE.hold(etag, absent));
        assert!(
            im(rev(3)).hold(etag, connected) && im(rev(3)).hold(etag, absent),
            "a 404's ETag too"
        );
        assert!(!im(rev(2)).hold(etag, connected));
        assert!(im(Condition::Any).hold(etag, connected) && !im(Condition::Any).hold(etag, absent));
        assert!(
            !im(Condition::Revisions(vec![])).hold(etag, connected),
            "a tag not ours"
        );
        assert!(inm(Condition::Any).hold(etag, absent) && !inm(Condition::Any).hold(etag, connected));
        assert!(!inm(rev(3)).hold(etag, connected) && inm(rev(2)).hold(etag, connected));
    }

    #[test]
    fn tenant_ids_follow_the_documented_alphabet() {
        assert!(TenantId::parse("acme-prod").is_ok());
        assert!(TenantId::parse("a").is_ok());
        assert!(TenantId::parse(&"a".repeat(128)).is_ok());
        assert!(TenantId::parse(&"a".repeat(129)).is_err());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("-acme").is_err());
        assert!(TenantId::parse("acme/prod").is_err());
        assert!(TenantId::parse("acmé").is_err());
        assert!(TenantId::parse("acme\u{0}").is_err());
    }

    #[test]
    fn org_ids_are_24_hex_at_adobeorg() {
        assert!(OrgId::parse("0123456789ABCDEF01234567@AdobeOrg").is_ok());
        assert!(OrgId::parse("0123456789abcdef01234567@AdobeOrg").is_ok());
        assert!(OrgId::parse("0123456789ABCDEF0123456@AdobeOrg").is_err());
        assert!(OrgId::parse("0123456789ABCDEF0123456G@AdobeOrg").is_err());
        assert!(OrgId::parse("0123456789ABCDEF01234567@adobeorg").is_err());
        assert!(OrgId::parse("0123456789ABCDEF01234567").is_err());
    }

    #[test]
    fn user_ids_keep_their_exact_form() {
        let personal = UserId::parse("ABCDEF0123456789ABCDEF01@AdobeID").unwrap();
        let federated = UserId::parse("ABCDEF0123456789ABCDEF01@1a2b3c").unwrap();
        assert_ne!(personal, federated);
        assert!(UserId::parse("no-at-sign").is_err());
        assert!(UserId::parse("a b@AdobeID").is_err());
        assert!(UserId::parse("@AdobeID").is_err());
        assert_eq!(
            Actor::parse("ABCDEF0123456789ABCDEF01@AdobeID").unwrap(),
            Actor::User(personal.clone())
        );
    }

    #[test]
    fn operators_are_cli_logins_that_read_back_as_operators() {
        let op = Actor::operator("ops alice/x");
        assert_eq!(op.as_str(), "cli:ops_alice_x");
        assert_eq!(Actor::parse(op.as_str()).unwrap(), op);
        assert_eq!(Actor::operator("").as_str(), "cli:unknown");
        assert!(Actor::parse("cli:").is_err());
        let client = Actor::provisioning("aem provisioning");
        assert_eq!(client.as_str(), "provisioning:aem_provisioning");
        assert_eq!(Actor::parse(client.as_str()).unwrap(), client);
    }

    #[test]
    fn admin_groups_are_one_to_a_hundred_idents_kept_once() {
        let parse = |g: &[&str]| AdminGroups::parse(g.iter().map(|s| (*s).to_owned()).collect());
        assert_eq!(parse(&["1", "2", "1"]).unwrap().as_slice(), ["1", "2"]);
        assert!(parse(&[]).is_err());
        assert!(parse(&[""]).is_err());
        assert!(parse(&["a b"]).is_err());
        assert!(parse(&[&"1".repeat(129)]).is_err());
        let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        assert!(AdminGroups::parse(many).is_err());
    }
}
