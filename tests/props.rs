//! Property tests of the parsers that see attacker input first: ids, the Authorization header, and
//! whole tokens. Whatever the input, they answer (accept or refuse) and never panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cc_connection::auth::token::{TokenError, bearer_token};
use cc_connection::auth::{KeyStore, TokenVerifier};
use cc_connection::domain::{OrgId, TenantId, UserId};
use cc_connection::ims::ImsClient;
use proptest::prelude::*;

fn verifier() -> TokenVerifier {
    // An IMS nobody listens on: any key lookup fails fast, as when IMS is down.
    let ims = ImsClient::new("http://127.0.0.1:9", Duration::from_millis(200)).unwrap();
    TokenVerifier::new(Arc::new(KeyStore::new(ims, None)), &["c".to_owned()], None)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn tenant_ids_accepted_are_exactly_the_documented_alphabet(s in "\\PC{0,140}") {
        let ok = TenantId::parse(&s).is_ok();
        let expected = !s.is_empty() && s.len() <= 128
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        prop_assert_eq!(ok, expected);
    }

    #[test]
    fn valid_tenant_ids_round_trip(s in "[A-Za-z0-9][A-Za-z0-9._-]{0,127}") {
        let id = TenantId::parse(&s).unwrap();
        prop_assert_eq!(id.as_str(), s.as_str());
    }

    #[test]
    fn org_ids_are_24_hex_and_the_suffix(ident in "[0-9A-Fa-f]{24}", junk in "\\PC{0,40}") {
        let id = format!("{ident}@AdobeOrg");
        prop_assert!(OrgId::parse(&id).is_ok());
        let parsed = OrgId::parse(&junk);
        prop_assert_eq!(parsed.is_ok(), junk.len() == 33 && junk.ends_with("@AdobeOrg")
            && junk.as_bytes()[..24].iter().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn user_ids_never_panic_and_keep_their_form(s in "\\PC{0,300}") {
        if let Ok(u) = UserId::parse(&s) {
            prop_assert_eq!(u.as_str(), s.as_str());
            prop_assert!(s.contains('@') && !s.contains(' ') && !s.contains('/'));
        }
    }

    #[test]
    fn authorization_values_never_panic(s in "\\PC{0,200}") {
        if let Some(t) = bearer_token(&s) {
            prop_assert!(!t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn arbitrary_tokens_are_refused_without_panicking(
        header in prop::collection::vec(any::<u8>(), 0..200),
        claims in prop::collection::vec(any::<u8>(), 0..300),
        sig in "[A-Za-z0-9_-]{0,50}",
        alg in prop::sample::select(vec!["RS256", "none", "HS256", "ES256", "PS256", "rs256", ""]),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let v = verifier();
        // Raw bytes, and the same bytes wrapped as a JWT with a chosen alg and hostile kid.
        let raw = format!("{}.{}.{sig}", URL_SAFE_NO_PAD.encode(&header), URL_SAFE_NO_PAD.encode(&claims));
        let shaped_header = serde_json::json!({"alg": alg, "kid": String::from_utf8_lossy(&header)});
        let shaped = format!("{}.{}.{sig}", URL_SAFE_NO_PAD.encode(shaped_header.to_string()), URL_SAFE_NO_PAD.encode(&claims));
        for token in [raw, shaped] {
            let result = rt.block_on(v.verify(&token));
            prop_assert!(matches!(result, Err(TokenError::Invalid(_) | TokenError::KeysUnavailable(_))));
        }
    }
}
