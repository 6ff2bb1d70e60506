//! Proof Key for Code Exchange (RFC 7636) and the authorize URL of the authorization-code flow
//! (RFC 6749 §4.1, SPEC §6.3).
//!
//! Owns: the random code verifier and `state`, the S256 challenge, and the query of the
//! authorize request. Must not: do I/O other than drawing randomness.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};

/// `n` random bytes from the system source as base64url without padding.
pub fn random_token(n: usize) -> Result<String, String> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system random source failed".to_string())?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The S256 challenge of a verifier: base64url(SHA-256(verifier)) (RFC 7636 §4.2).
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// One login's PKCE secrets and `state`.
pub struct Pkce {
    /// The code verifier (sent only to the token endpoint).
    pub verifier: String,
    /// Its S256 challenge (in the authorize URL).
    pub challenge: String,
    /// The `state` the redirect must carry back (CSRF protection, RFC 6749 §10.12).
    pub state: String,
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pkce(…)")
    }
}

impl Pkce {
    /// Fresh secrets: a 43-character verifier (32 random bytes, RFC 7636 §4.1 recommends
    /// that much entropy) and a 22-character state.
    pub fn new() -> Result<Pkce, String> {
        let verifier = random_token(32)?;
        Ok(Pkce {
            challenge: challenge(&verifier),
            verifier,
            state: random_token(16)?,
        })
    }
}

/// The authorize request URL: `authorize_url` with the code-flow parameters appended (after
/// any query it already has).
pub fn authorize_url(
    authorize_url: &str,
    client_id: &str,
    redirect_uri: &str,
    scope: Option<&str>,
    pkce: &Pkce,
) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", &pkce.state);
    if let Some(s) = scope {
        q.append_pair("scope", s);
    }
    let sep = if authorize_url.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{authorize_url}{sep}{}", q.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_matches_the_rfc_7636_example() {
        // RFC 7636 Appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn fresh_secrets_differ_and_have_the_recommended_length() {
        let a = Pkce::new().unwrap();
        let b = Pkce::new().unwrap();
        assert_eq!(a.verifier.len(), 43);
        assert_ne!(a.verifier, b.verifier);
        assert_ne!(a.state, b.state);
        assert_eq!(a.challenge, challenge(&a.verifier));
        assert!(!format!("{a:?}").contains(&a.verifier));
    }

    #[test]
    fn authorize_url_carries_the_parameters_encoded() {
        let p = Pkce {
            verifier: "v".into(),
            challenge: "c".into(),
            state: "s".into(),
        };
        let u = authorize_url(
            "https://auth.example/authorize?audience=x",
            "my client",
            "http://127.0.0.1:5/callback",
            Some("a b"),
            &p,
        );
        assert_eq!(
            u,
            "https://auth.example/authorize?audience=x&response_type=code&client_id=my+client&redirect_uri=http%3A%2F%2F127.0.0.1%3A5%2Fcallback&code_challenge=c&code_challenge_method=S256&state=s&scope=a+b"
        );
    }
}
