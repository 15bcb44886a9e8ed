//! `?wait=<seconds>`: how long a read may be held, shared by the watch (`GET` of a connection with
//! `If-None-Match`) and the change feed's long poll.

use std::time::Duration;

use actix_web::web;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;

/// The longest `wait`, in seconds: under the 60 s after which the proxies and load balancers in
/// front of a service commonly end an idle request, so the answer comes first.
pub const MAX_WAIT_SECS: u64 = 50;

const INVALID: &str = "wait must be a whole number of seconds from 1 to 50";

/// `?wait=<seconds>`: hold the read until something changes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Wait {
    /// Seconds to hold the request, 1 to 50. A watch (with `If-None-Match`) is held while the
    /// state still has that ETag, then answers 304; without `If-None-Match` it answers at once. A
    /// long poll of the change feed is held while there is no change after `after`, then answers
    /// an empty page.
    #[param(minimum = 1, maximum = 50, example = 30)]
    pub wait: Option<u64>,
}

impl Wait {
    /// The `wait` of a query string, if any; outside 1..=50 (or not a whole number) is 400
    /// `invalid-request`.
    pub fn parse(query: &str) -> Result<Option<Duration>, ApiError> {
        let parsed = web::Query::<Self>::from_query(query).map_err(|_| ApiError::invalid(INVALID))?;
        match parsed.wait {
            None => Ok(None),
            Some(secs) if (1..=MAX_WAIT_SECS).contains(&secs) => Ok(Some(Duration::from_secs(secs))),
            Some(_) => Err(ApiError::invalid(INVALID)),
        }
    }
}
