//! Docker registry bearer tokens: signed JWTs (ES256 with a `kid`) as the distribution
//! token-auth spec and Harbor issue them, their `access` claim, and scopes.
//!
//! Verification is strict: the header must say `ES256` and name a key this registry holds;
//! `alg: none`, any other algorithm, a bad signature, another issuer or audience, an
//! expired or not-yet-valid token, or a refresh token presented as an access token is
//! refused.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_meta::SigningKey;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// The only algorithm berth signs and accepts.
pub const ALGORITHM: &str = "ES256";

/// How much clock difference between nodes `exp`/`nbf` checks forgive.
const LEEWAY_SECS: i64 = 30;

/// One entry of a token's `access` claim (or of a request's scope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl ResourceActions {
    /// Parse a scope as clients send it: `repository:team/app:pull,push`,
    /// `registry:catalog:*`. The resource name may itself contain `:`; a class in
    /// parentheses after the type (`repository(plugin)`) is dropped.
    pub fn parse_scope(scope: &str) -> Option<ResourceActions> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split('(').next().unwrap_or(kind);
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        let actions = actions
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        Some(ResourceActions {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions,
        })
    }

    /// The scope string: `type:name:action,action`.
    pub fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// `aud` may be a string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The account: a user name, a robot's full name, or empty for an anonymous token.
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<ResourceActions>,
    /// Set on refresh tokens, which are never accepted as access tokens (and vice versa).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh: bool,
}

impl Claims {
    /// Whether the token grants `action` on the repository `name`.
    pub fn grants(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|a| {
            a.kind == kind && a.name == name && a.actions.iter().any(|x| x == action || x == "*")
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not ES256")]
    Algorithm,
    #[error("the token was signed by a key this registry does not know")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    Signature,
    #[error("the token was not issued for this registry")]
    WrongIssuerOrAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("a refresh token is not an access token")]
    WrongKind,
    #[error("cannot create a signing key: {0}")]
    Key(String),
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// Signing and verification keys: the newest key that is not retired signs; every key held
/// verifies, so a rotation never breaks tokens already issued.
pub struct KeyRing {
    signer: Option<(String, EcdsaKeyPair)>,
    verifiers: HashMap<String, Vec<u8>>,
    rng: SystemRandom,
}

impl KeyRing {
    /// A new P-256 key, its `kid` derived from its public key as Docker's libtrust does
    /// (so tools that show key ids show the familiar `ABCD:EFGH:…` form).
    pub fn generate_key(now: i64) -> Result<SigningKey, TokenError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| TokenError::Key("key generation failed".into()))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| TokenError::Key("generated key does not load".into()))?;
        Ok(SigningKey {
            kid: libtrust_kid(pair.public_key().as_ref()),
            algorithm: ALGORITHM.into(),
            private_key: pkcs8.as_ref().to_vec(),
            created_at: now,
            retired_at: None,
        })
    }

    /// Load the keys the store holds. Keys of another algorithm are skipped with a warning.
    pub fn from_keys(keys: &[SigningKey]) -> KeyRing {
        let rng = SystemRandom::new();
        let mut signer = None;
        let mut verifiers = HashMap::new();
        for key in keys {
            if key.algorithm != ALGORITHM {
                tracing::warn!(kid = %key.kid, algorithm = %key.algorithm, "skipping a signing key of an unsupported algorithm");
                continue;
            }
            let Ok(pair) =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.private_key, &rng)
            else {
                tracing::warn!(kid = %key.kid, "skipping a signing key that does not load");
                continue;
            };
            verifiers.insert(key.kid.clone(), pair.public_key().as_ref().to_vec());
            // Keys come oldest first: the last unretired one signs.
            if key.retired_at.is_none() {
                signer = Some((key.kid.clone(), pair));
            }
        }
        KeyRing {
            signer,
            verifiers,
            rng,
        }
    }

    /// The kid of the key that signs new tokens.
    pub fn signing_kid(&self) -> Option<&str> {
        self.signer.as_ref().map(|(kid, _)| kid.as_str())
    }

    /// Sign claims into a compact JWT.
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let (kid, pair) = self
            .signer
            .as_ref()
            .ok_or_else(|| TokenError::Key("no active signing key".into()))?;
        let header = Header {
            alg: ALGORITHM.into(),
            typ: Some("JWT".into()),
            kid: Some(kid.clone()),
        };
        let encode = |value: &dyn erased::Json| -> Result<String, TokenError> {
            Ok(URL_SAFE_NO_PAD.encode(value.to_json().map_err(|_| TokenError::Malformed)?))
        };
        let signing_input = format!("{}.{}", encode(&header)?, encode(claims)?);
        let signature = pair
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| TokenError::Key("signing failed".into()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// Verify a compact JWT and return its claims.
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
        now: i64,
    ) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part.trim_end_matches('='))
                .map_err(|_| TokenError::Malformed)
        };
        let header: Header =
            serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
        if header.alg != ALGORITHM {
            return Err(TokenError::Algorithm);
        }
        let public = header
            .kid
            .as_ref()
            .and_then(|kid| self.verifiers.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        let signing_input_len = token.len() - signature.len() - 1;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public)
            .verify(&token.as_bytes()[..signing_input_len], &decode(signature)?)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims =
            serde_json::from_slice(&decode(payload)?).map_err(|_| TokenError::Malformed)?;
        if claims.iss != issuer || !claims.aud.contains(audience) {
            return Err(TokenError::WrongIssuerOrAudience);
        }
        if claims.exp + LEEWAY_SECS <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf - LEEWAY_SECS > now {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

/// A random token id.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // A failing system RNG leaves zeros: the id is informational, never a secret.
    let _ = SystemRandom::new().fill(&mut bytes);
    hex::encode(bytes)
}

/// Docker libtrust's key id: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits in
/// base32, in twelve groups of four joined by `:`.
fn libtrust_kid(uncompressed_point: &[u8]) -> String {
    // DER prefix of a SubjectPublicKeyInfo for an uncompressed P-256 point.
    const SPKI_P256_PREFIX: &[u8] = &[
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    let mut hasher = sha2::Sha256::new();
    hasher.update(SPKI_P256_PREFIX);
    hasher.update(uncompressed_point);
    let digest = hasher.finalize();
    let encoded = base32(&digest[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Serializing header and claims through one closure.
mod erased {
    pub trait Json {
        fn to_json(&self) -> serde_json::Result<Vec<u8>>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> serde_json::Result<Vec<u8>> {
            serde_json::to_vec(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn ring() -> KeyRing {
        KeyRing::from_keys(&[KeyRing::generate_key(NOW).expect("key")])
    }

    fn claims() -> Claims {
        Claims {
            iss: "berth".into(),
            sub: "alice".into(),
            aud: Audience::One("registry".into()),
            exp: NOW + 300,
            nbf: NOW,
            iat: NOW,
            jti: random_id(),
            access: vec![
                ResourceActions::parse_scope("repository:team/app:pull,push").expect("scope"),
            ],
            refresh: false,
        }
    }

    fn forge(header: &str, payload: &Claims, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).expect("json"))
        )
    }

    #[test]
    fn signed_tokens_verify_and_carry_their_access() {
        let keys = ring();
        let token = keys.sign(&claims()).expect("sign");
        let verified = keys
            .verify(&token, "berth", "registry", NOW)
            .expect("valid");
        assert!(verified.grants("repository", "team/app", "push"));
        assert!(!verified.grants("repository", "team/app", "delete"));
        assert!(!verified.grants("repository", "team/other", "pull"));
        let kid = keys.signing_kid().expect("kid");
        assert_eq!(kid.split(':').count(), 12);
    }

    #[test]
    fn attacks_are_refused() {
        let keys = ring();
        let token = keys.sign(&claims()).expect("sign");
        let kid = keys.signing_kid().expect("kid").to_owned();
        // alg: none, and another algorithm with the same kid.
        let none = forge(r#"{"alg":"none","typ":"JWT"}"#, &claims(), "");
        assert_eq!(
            keys.verify(&none, "berth", "registry", NOW),
            Err(TokenError::Algorithm)
        );
        let hs256 = forge(
            &format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#),
            &claims(),
            "c2ln",
        );
        assert_eq!(
            keys.verify(&hs256, "berth", "registry", NOW),
            Err(TokenError::Algorithm)
        );
        // A changed payload under the original signature.
        let mut escalated = claims();
        escalated.access[0].actions.push("delete".into());
        let signature = token.rsplit('.').next().expect("signature");
        let tampered = forge(
            &format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#),
            &escalated,
            signature,
        );
        assert_eq!(
            keys.verify(&tampered, "berth", "registry", NOW),
            Err(TokenError::Signature)
        );
        // Signed by a key this registry does not hold.
        let stranger = ring().sign(&claims()).expect("sign");
        assert_eq!(
            keys.verify(&stranger, "berth", "registry", NOW),
            Err(TokenError::UnknownKey)
        );
        // Issuer, audience, time.
        assert_eq!(
            keys.verify(&token, "other", "registry", NOW),
            Err(TokenError::WrongIssuerOrAudience)
        );
        assert_eq!(
            keys.verify(&token, "berth", "other", NOW),
            Err(TokenError::WrongIssuerOrAudience)
        );
        assert_eq!(
            keys.verify(&token, "berth", "registry", NOW + 300 + LEEWAY_SECS),
            Err(TokenError::Expired)
        );
        assert_eq!(
            keys.verify(&token, "berth", "registry", NOW - LEEWAY_SECS - 1),
            Err(TokenError::NotYetValid)
        );
        for garbage in ["", "a.b", "a.b.c.d", "!!!.###.$$$"] {
            assert!(
                keys.verify(garbage, "berth", "registry", NOW).is_err(),
                "{garbage}"
            );
        }
    }

    #[test]
    fn rotation_keeps_old_tokens_valid() {
        let old = KeyRing::generate_key(NOW).expect("key");
        let before = KeyRing::from_keys(std::slice::from_ref(&old));
        let token = before.sign(&claims()).expect("sign");
        let mut retired = old.clone();
        retired.retired_at = Some(NOW + 1);
        let new = KeyRing::generate_key(NOW + 1).expect("key");
        let after = KeyRing::from_keys(&[retired, new.clone()]);
        assert_eq!(after.signing_kid(), Some(new.kid.as_str()));
        assert!(after.verify(&token, "berth", "registry", NOW).is_ok());
        let fresh = after.sign(&claims()).expect("sign");
        assert!(after.verify(&fresh, "berth", "registry", NOW).is_ok());
    }

    #[test]
    fn scopes_parse_as_clients_send_them() {
        let s = ResourceActions::parse_scope("repository:a/b:pull,push").expect("scope");
        assert_eq!((s.kind.as_str(), s.name.as_str()), ("repository", "a/b"));
        assert_eq!(s.actions, ["pull", "push"]);
        assert_eq!(s.scope(), "repository:a/b:pull,push");
        let c = ResourceActions::parse_scope("registry:catalog:*").expect("scope");
        assert_eq!(c.actions, ["*"]);
        let class = ResourceActions::parse_scope("repository(plugin):a:pull").expect("scope");
        assert_eq!(class.kind, "repository");
        let port = ResourceActions::parse_scope("repository:host:5000/a:pull").expect("scope");
        assert_eq!(port.name, "host:5000/a");
        assert_eq!(ResourceActions::parse_scope("nonsense"), None);
        assert_eq!(ResourceActions::parse_scope("repository::pull"), None);
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
    }
}
