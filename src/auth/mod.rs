//! Who is calling, and what they may do: token verification and typed extractors whose presence in
//! a handler's signature states who may call it.

mod extract;
pub mod keys;
pub mod token;

pub use extract::{
    AdminCandidate, Caller, Integration, NOT_AN_ADMIN, NOT_AN_INTEGRATION, NOT_PROVISIONING, Provisioner,
    TenantAdmin, TenantReader, UserCaller,
};
pub use keys::KeyStore;
pub use token::{TokenVerifier, VerifiedToken};
