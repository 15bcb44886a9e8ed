//! The development IMS's two RSA keys, made once per process (RSA generation is the slow part of
//! starting a development IMS, and tests start many).

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::Value;

use super::{CERT_KID, JWKS_KID, SUCCESSOR_KID};

/// One signing key with what the development IMS publishes of it.
pub struct DevKey {
    /// Key id.
    pub kid: &'static str,
    encoding: EncodingKey,
    /// Modulus, base64url (JWKS `n`).
    pub n: String,
    /// Exponent, base64url (JWKS `e`).
    pub e: String,
    /// Self-signed certificate, PEM (served under `/keys/<kid>.cer`).
    pub cert_pem: String,
    /// Public key, PEM.
    pub public_pem: String,
    pair: rcgen::KeyPair,
}

impl DevKey {
    fn generate(kid: &'static str) -> DevKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .expect("RSA key generation (rcgen with aws-lc-rs)");
        let mut params = rcgen::CertificateParams::new(vec!["ims-dev.localhost".to_owned()])
            .expect("certificate parameters");
        params.distinguished_name.push(rcgen::DnType::CommonName, kid);
        let cert = params.self_signed(&pair).expect("self-signed certificate");
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).expect("own certificate parses");
        let (n, e) = match parsed.public_key().parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
                let strip = |b: &[u8]| {
                    let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
                    URL_SAFE_NO_PAD.encode(&b[start..])
                };
                (strip(rsa.modulus), strip(rsa.exponent))
            }
            _ => panic!("development key is not RSA"),
        };
        let spki = parsed.public_key().raw;
        let public_pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(spki)
        );
        let encoding = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).expect("RSA PEM key");
        DevKey {
            kid,
            encoding,
            n,
            e,
            cert_pem: cert.pem(),
            public_pem,
            pair,
        }
    }

    /// A certificate of this key (PEM) valid from an hour before `not_after` until `not_after`.
    pub fn certificate_until(&self, not_after: std::time::SystemTime) -> Option<String> {
        let mut params = rcgen::CertificateParams::new(vec!["ims-dev.localhost".to_owned()]).ok()?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, self.kid);
        params.not_after = not_after.into();
        params.not_before = (not_after - std::time::Duration::from_secs(3600)).into();
        params.self_signed(&self.pair).ok().map(|c| c.pem())
    }

    /// A compact JWT of `header` (verbatim) and `claims`, RS256-signed with this key.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap_or_default());
        let input = format!("{}.{}", part(header), part(claims));
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, Algorithm::RS256)
            .unwrap_or_default();
        format!("{input}.{signature}")
    }

    /// The JWKS entry.
    pub fn jwk(&self) -> Value {
        serde_json::json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256", "n": self.n, "e": self.e})
    }
}

static KEYS: OnceLock<[DevKey; 2]> = OnceLock::new();

fn keys() -> &'static [DevKey; 2] {
    KEYS.get_or_init(|| [DevKey::generate(JWKS_KID), DevKey::generate(CERT_KID)])
}

static SUCCESSOR: OnceLock<DevKey> = OnceLock::new();

/// The key that replaces the access-token key when the development IMS rotates it (made on first
/// use: only the rotation tests need it).
pub fn successor() -> &'static DevKey {
    SUCCESSOR.get_or_init(|| DevKey::generate(SUCCESSOR_KID))
}

/// The key of `kid` (one of the two constants).
pub fn key(kid: &str) -> &'static DevKey {
    let [jwks, cert] = keys();
    if kid == CERT_KID { cert } else { jwks }
}

/// The key whose certificate file is `name` (`<kid>.cer`).
pub fn by_cert_name(name: &str) -> Option<&'static DevKey> {
    keys().iter().find(|k| name.strip_suffix(".cer") == Some(k.kid))
}
