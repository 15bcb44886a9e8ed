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

/// Who ended a connection: an administrator (their IMS user id), or an operator who removed the
/// tenant on the command line (`cli:<login>`).
/// In the OpenAPI document it is a string (`value_type = Option<String>` where it is used).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// An administrator, through the API.
    User(UserId),
    /// An operator of the command line; holds the whole `cli:<login>` form.
    Operator(String),
}

/// The prefix of an operator's [`Actor`] id.
const OPERATOR_PREFIX: &str = "cli:";

impl Actor {
    /// The operator `login` as `cli:<login>`. A login outside printable ASCII, or with spaces or
    /// `/`, has those characters replaced by `_`; an empty one becomes `unknown`.
    pub fn operator(login: &str) -> Self {
        let mut clean: String = login
            .chars()
            .take(200)
            .map(|c| if c.is_ascii_graphic() && c != '/' { c } else { '_' })
            .collect();
        if clean.is_empty() {
            clean = "unknown".to_owned();
        }
        Self::Operator(format!("{OPERATOR_PREFIX}{clean}"))
    }

    /// Parses a stored actor: `cli:<login>` or an IMS user id.
    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        match raw.strip_prefix(OPERATOR_PREFIX) {
            Some(login) if !login.is_empty() && login.len() <= 200 => {
                if login.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
                    Ok(Self::Operator(raw.to_owned()))
                } else {
                    Err(InvalidId {
                        field: "ended_by",
                        reason: "an operator login may hold only printable ASCII without spaces or '/'",
                    })
                }
            }
            _ => UserId::parse(raw).map(Self::User),
        }
    }

    /// The id as stored and sent.
    pub fn as_str(&self) -> &str {
        match self {
            Self::User(u) => u.as_str(),
            Self::Operator(o) => o,
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
    }
}
