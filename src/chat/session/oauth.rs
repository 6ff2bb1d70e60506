//! `/auth P enable|disable` (SPEC §6.3): the session uses P's stored OAuth `default` login
//! instead of an API key, or goes back to the API key; `/profile save model` then writes
//! `"auth": {"type": "oauth"}`.
//!
//! Owns: checking that P is the session's provider and that the login exists. Must not: log in
//! (that is `/auth P login B`) or read a token.

use super::Session;
use crate::auth::credentials::StoredCredential;
use crate::auth::login::no_builtin_signin;
use crate::auth::store;

impl Session {
    /// Whether `/auth P enable` is in effect (`None`: the loaded profile's own `auth`).
    pub fn oauth_override(&self) -> Option<bool> {
        self.ident.oauth
    }

    /// `/auth P enable` (`on`) or `/auth P disable`.
    pub fn set_oauth(&mut self, provider: &str, on: bool) -> Result<String, String> {
        self.refuse_with_lb("/auth enable|disable")?;
        let p = store::provider(provider)?;
        let current = self.model_setup().map(|(_, m)| m.provider_info().name);
        match current {
            Ok(c) if c == p.name => {}
            Ok(c) => {
                return Err(format!(
                    "the session runs provider {c}: choose {} first with /provider {}",
                    p.name, p.name
                ));
            }
            Err(_) if self.ident.provider.is_some() => {
                let c = self.ident.provider.clone().unwrap_or_default();
                if store::provider(&c).map(|x| x.name) != Ok(p.name) {
                    return Err(format!(
                        "the session runs provider {c}: choose {} first with /provider {}",
                        p.name, p.name
                    ));
                }
            }
            Err(_) => {
                return Err(format!(
                    "no provider chosen: /provider {} first (then /model NAME)",
                    p.name
                ));
            }
        }
        if !on {
            self.ident.oauth = Some(false);
            return Ok(format!(
                "{}: OAuth off for this session; the API key is used (keyfile, auth-key or the provider's variable)",
                p.name
            ));
        }
        match store::read(self.store.root(), p.name, "default") {
            Ok(Some(StoredCredential::Oauth { .. })) => {
                self.ident.oauth = Some(true);
                Ok(format!(
                    "{}: the session uses the OAuth login of bucket \"default\"; /profile save model NAME saves it as \"auth\": {{\"type\": \"oauth\"}}",
                    p.name
                ))
            }
            Ok(Some(StoredCredential::Apikey { .. })) => Err(format!(
                "{}/default holds an API key, not an OAuth login; {}",
                p.name,
                no_builtin_signin(p.name, "default")
            )),
            Ok(None) => Err(format!(
                "no OAuth login is stored for {}/default. {}",
                p.name,
                no_builtin_signin(p.name, "default")
            )),
            Err(e) => Err(e),
        }
    }
}
