//! Entity tags and conditional requests: the `ETag` of a revision, `If-Match` (the writes'
//! precondition) and `If-None-Match` (reads and watches).

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::domain::Precondition;
use crate::error::ApiError;

/// The `ETag` of a revision: the number, quoted.
pub fn of(revision: i64) -> HeaderValue {
    // Digits and quotes only: always a valid header value.
    HeaderValue::from_str(&format!("\"{revision}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// One entity tag of a conditional header, as far as this service can compare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityTag {
    /// One this service sends: a revision.
    Revision(i64),
    /// Any other tag, or a weak one where strong comparison applies: it matches nothing.
    Foreign,
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
    /// Whether the list names `revision` (`*` names none by itself: what it means is the
    /// header's to say).
    pub fn names(&self, revision: i64) -> bool {
        match self {
            Self::Any => false,
            Self::Tags(tags) => tags.contains(&EntityTag::Revision(revision)),
        }
    }
}

/// How tags are compared (RFC 9110 8.8.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    /// `If-Match`: a weak tag never matches.
    Strong,
    /// `If-None-Match`: `W/"7"` matches `"7"`.
    Weak,
}

/// Parses an entity-tag list: `*`, or quoted tags; `None` when the header is absent.
fn parse(
    headers: &HeaderMap,
    name: &HeaderName,
    comparison: Comparison,
) -> Result<Option<EntityTags>, ApiError> {
    let mut list: Option<EntityTags> = None;
    for value in headers.get_all(name) {
        let text = value
            .to_str()
            .map_err(|_| ApiError::invalid(format!("{name} must be ASCII")))?;
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let entry = list.get_or_insert(EntityTags::Tags(Vec::new()));
            if item == "*" {
                *entry = EntityTags::Any;
                continue;
            }
            let (is_weak, tag) = match item.strip_prefix("W/") {
                Some(rest) => (true, rest),
                None => (false, item),
            };
            let inner = tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .ok_or_else(|| ApiError::invalid(format!("{name} must hold quoted entity tags")))?;
            if let EntityTags::Tags(tags) = entry {
                let comparable = comparison == Comparison::Weak || !is_weak;
                tags.push(match inner.parse::<i64>() {
                    Ok(revision) if comparable => EntityTag::Revision(revision),
                    _ => EntityTag::Foreign,
                });
            }
        }
    }
    Ok(list)
}

/// `If-None-Match`, compared weakly.
pub fn if_none_match(headers: &HeaderMap) -> Result<Option<EntityTags>, ApiError> {
    parse(headers, &header::IF_NONE_MATCH, Comparison::Weak)
}

/// `If-Match` as the store takes it: `*` or one tag. A tag that is not one of ours can never hold:
/// it is refused (412) here.
pub fn if_match(headers: &HeaderMap) -> Result<Option<Precondition>, ApiError> {
    match parse(headers, &header::IF_MATCH, Comparison::Strong)? {
        None => Ok(None),
        Some(EntityTags::Any) => Ok(Some(Precondition::Any)),
        Some(EntityTags::Tags(tags)) => match tags.as_slice() {
            [EntityTag::Revision(revision)] => Ok(Some(Precondition::Revision(*revision))),
            [EntityTag::Foreign] => Err(ApiError::PreconditionFailed),
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
    fn entity_tags_parse_strong_weak_and_star() {
        let inm = |v| if_none_match(&headers(header::IF_NONE_MATCH, v)).ok().flatten();
        assert_eq!(inm("\"7\""), Some(EntityTags::Tags(vec![EntityTag::Revision(7)])));
        assert_eq!(
            inm("W/\"7\", \"8\""),
            Some(EntityTags::Tags(vec![
                EntityTag::Revision(7),
                EntityTag::Revision(8)
            ]))
        );
        assert_eq!(inm("*"), Some(EntityTags::Any));
        let im = |v| {
            parse(
                &headers(header::IF_MATCH, v),
                &header::IF_MATCH,
                Comparison::Strong,
            )
            .ok()
            .flatten()
        };
        // Strong comparison: a weak tag never matches.
        assert_eq!(im("W/\"7\""), Some(EntityTags::Tags(vec![EntityTag::Foreign])));
        assert_eq!(im("\"abc\""), Some(EntityTags::Tags(vec![EntityTag::Foreign])));
        assert!(
            parse(
                &headers(header::IF_MATCH, "7"),
                &header::IF_MATCH,
                Comparison::Strong
            )
            .is_err()
        );
    }

    #[test]
    fn if_match_is_star_or_one_of_our_tags() {
        let im = |v| if_match(&headers(header::IF_MATCH, v));
        assert_eq!(im("\"7\"").ok().flatten(), Some(Precondition::Revision(7)));
        assert_eq!(im("*").ok().flatten(), Some(Precondition::Any));
        assert!(matches!(im("W/\"7\""), Err(ApiError::PreconditionFailed)));
        assert!(matches!(im("\"7\", \"8\""), Err(ApiError::InvalidRequest { .. })));
        assert!(matches!(if_match(&HeaderMap::new()), Ok(None)));
    }
}
