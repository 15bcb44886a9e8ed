//! Entity tags and conditional requests: the `ETag` of a revision, `If-Match` (the writes'
//! precondition) and `If-None-Match` (reads and watches). Parsing and comparison are actix-web's
//! (`EntityTag`, RFC 9110 8.8.3); what is ours is what a tag means here: a revision.

use actix_web::http::header::{self, EntityTag, HeaderMap, HeaderName, HeaderValue, TryIntoHeaderValue};

use crate::domain::{Condition, Preconditions, Revision};
use crate::error::ApiError;

/// The strong entity tag of a revision: the number.
fn tag_of(revision: Revision) -> EntityTag {
    EntityTag::new_strong(revision.to_string())
}

/// The `ETag` of a revision: the number, quoted.
pub fn of(revision: Revision) -> HeaderValue {
    // Digits only: always a valid header value.
    header::ETag(tag_of(revision))
        .try_into_value()
        .unwrap_or(HeaderValue::from_static("\"0\""))
}

/// An entity-tag list as a conditional header holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityTags {
    /// `*`.
    Any,
    /// The tags listed.
    Tags(Vec<EntityTag>),
}

impl EntityTags {
    /// Whether the list names `revision`, compared weakly as `If-None-Match` compares (`W/"7"`
    /// names 7; `*` names none by itself: what it means is the header's to say).
    pub fn names(&self, revision: Revision) -> bool {
        match self {
            Self::Any => false,
            Self::Tags(tags) => {
                let ours = tag_of(revision);
                tags.iter().any(|t| t.weak_eq(&ours))
            }
        }
    }
}

/// Parses an entity-tag list (`*`, or quoted tags over one or more header lines); `None` when the
/// header is absent or lists nothing.
fn parse(headers: &HeaderMap, name: &HeaderName) -> Result<Option<EntityTags>, ApiError> {
    let malformed = || ApiError::invalid(format!("{name} must hold quoted entity tags"));
    let mut tags = Vec::new();
    for value in headers.get_all(name) {
        let text = value.to_str().map_err(|_| malformed())?;
        // Item by item rather than `header::from_comma_delimited`, which drops what does not parse:
        // a malformed tag is a 400 here, not a header that silently lists less.
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                return Ok(Some(EntityTags::Any));
            }
            tags.push(item.parse::<EntityTag>().map_err(|_| malformed())?);
        }
    }
    Ok((!tags.is_empty()).then_some(EntityTags::Tags(tags)))
}

/// `If-None-Match`, compared weakly.
pub fn if_none_match(headers: &HeaderMap) -> Result<Option<EntityTags>, ApiError> {
    parse(headers, &header::IF_NONE_MATCH)
}

/// The conditions of a write: `If-Match` (strong comparison: a weak tag, or one that is not a
/// revision of ours, names nothing, so it fails as stale) and `If-None-Match` (weak comparison).
/// Read only once the caller is known to be allowed to write: to anyone else the headers mean
/// nothing, so they cannot tell a registered tenant or its state.
pub fn write_preconditions(headers: &HeaderMap) -> Result<Preconditions, ApiError> {
    let condition = |tags: EntityTags, strong: bool| match tags {
        EntityTags::Any => Condition::Any,
        EntityTags::Tags(tags) => Condition::Revisions(
            tags.iter()
                .filter_map(|t| {
                    let revision = t.tag().parse::<Revision>().ok()?;
                    let ours = tag_of(revision);
                    let same = if strong {
                        t.strong_eq(&ours)
                    } else {
                        t.weak_eq(&ours)
                    };
                    same.then_some(revision)
                })
                .collect(),
        ),
    };
    Ok(Preconditions {
        if_match: parse(headers, &header::IF_MATCH)?.map(|t| condition(t, true)),
        if_none_match: if_none_match(headers)?.map(|t| condition(t, false)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: HeaderName, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            name,
            HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
        );
        h
    }

    #[test]
    fn if_none_match_names_revisions_weakly_and_star_names_none() {
        let inm = |v| if_none_match(&headers(header::IF_NONE_MATCH, v)).ok().flatten();
        let names = |v, r| inm(v).is_some_and(|t: EntityTags| t.names(r));
        assert!(names("\"7\"", Revision::new(7)));
        assert!(names("W/\"7\", \"8\"", Revision::new(7)) && names("W/\"7\", \"8\"", Revision::new(8)));
        assert!(!names("\"7\"", Revision::new(8)));
        assert!(!names("\"abc\"", Revision::new(7)));
        assert_eq!(inm("*"), Some(EntityTags::Any));
        assert!(!names("*", Revision::new(7)));
        assert!(
            if_none_match(&headers(header::IF_NONE_MATCH, "7")).is_err(),
            "unquoted"
        );
        assert!(matches!(if_none_match(&HeaderMap::new()), Ok(None)));
    }

    #[test]
    fn write_preconditions_compare_if_match_strongly_and_if_none_match_weakly() {
        let pre = |name, v| write_preconditions(&headers(name, v));
        let revisions = |v: &[i64]| {
            Some(Condition::Revisions(
                v.iter().map(|n| Revision::new(*n)).collect(),
            ))
        };
        let im = |v| pre(header::IF_MATCH, v).map(|p| p.if_match).ok().flatten();
        assert_eq!(im("\"7\""), revisions(&[7]));
        assert_eq!(im("\"7\", \"8\""), revisions(&[7, 8]));
        assert_eq!(im("*"), Some(Condition::Any));
        // Strong comparison: a weak tag never matches; nor does a tag that is not a revision.
        assert_eq!(im("W/\"7\""), revisions(&[]));
        assert_eq!(im("\"abc\""), revisions(&[]));
        let inm = |v| {
            pre(header::IF_NONE_MATCH, v)
                .map(|p| p.if_none_match)
                .ok()
                .flatten()
        };
        assert_eq!(inm("*"), Some(Condition::Any));
        assert_eq!(inm("W/\"7\""), revisions(&[7]));
        assert!(matches!(
            pre(header::IF_MATCH, "7"),
            Err(ApiError::InvalidRequest { .. })
        ));
        assert_eq!(
            write_preconditions(&HeaderMap::new()).ok(),
            Some(Preconditions::NONE)
        );
    }
}
