//! Entity tags and conditional requests: the `ETag` of a revision, `If-Match` (the writes'
//! precondition) and `If-None-Match` (reads and watches). Parsing and comparison are actix-web's
//! (`EntityTag`, RFC 9110 8.8.3); what is ours is what a tag means here: a revision.

use actix_web::http::header::{self, EntityTag, HeaderMap, HeaderName, HeaderValue, TryIntoHeaderValue};

use crate::domain::{Precondition, Revision};
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

/// `If-Match` as the store takes it: `*` or one tag. A tag that is not one of ours can never hold
/// (strong comparison: a weak tag never matches): it is refused (412) here.
pub fn if_match(headers: &HeaderMap) -> Result<Option<Precondition>, ApiError> {
    match parse(headers, &header::IF_MATCH)? {
        None => Ok(None),
        Some(EntityTags::Any) => Ok(Some(Precondition::Any)),
        Some(EntityTags::Tags(tags)) => match tags.as_slice() {
            [tag] => match tag.tag().parse::<Revision>() {
                Ok(revision) if tag.strong_eq(&tag_of(revision)) => {
                    Ok(Some(Precondition::Revision(revision)))
                }
                _ => Err(ApiError::PreconditionFailed),
            },
            _ => Err(ApiError::invalid("If-Match must hold one entity tag or *")),
        },
    }
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
    fn if_match_is_star_or_one_of_our_tags() {
        let im = |v| if_match(&headers(header::IF_MATCH, v));
        assert_eq!(
            im("\"7\"").ok().flatten(),
            Some(Precondition::Revision(Revision::new(7)))
        );
        assert_eq!(im("*").ok().flatten(), Some(Precondition::Any));
        // Strong comparison: a weak tag never matches; nor does a tag that is not a revision.
        assert!(matches!(im("W/\"7\""), Err(ApiError::PreconditionFailed)));
        assert!(matches!(im("\"abc\""), Err(ApiError::PreconditionFailed)));
        assert!(matches!(im("\"7\", \"8\""), Err(ApiError::InvalidRequest { .. })));
        assert!(matches!(im("7"), Err(ApiError::InvalidRequest { .. })));
        assert!(matches!(if_match(&HeaderMap::new()), Ok(None)));
    }
}
