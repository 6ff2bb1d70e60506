//! The HTTP headers every protocol sends: content type, the credential in the protocol's header
//! (SPEC §6.3), and the backend's `custom-headers` (SPEC §3.1).
//!
//! Owns: how a [`Credential`] and `custom-headers` become header lines. Must not: log or
//! inspect secrets (the transport never logs headers; redaction is `crate::redact`'s).
//!
//! Merging rule: a custom header is never dropped. One whose name matches a header llxprt sets
//! (case-insensitively) replaces it — the user's value wins, e.g. a gateway's own
//! `Authorization` — except `anthropic-beta`, a comma-separated list, where the custom value is
//! appended to llxprt's (`oauth-2025-04-20,<custom>`), so the OAuth beta is kept.

use crate::profile::settings::Settings;

use super::Credential;

/// Headers whose values are comma-separated lists: merged, not replaced.
const LIST_HEADERS: &[&str] = &["anthropic-beta"];

/// The headers for a JSON POST: `content-type`, and `accept: text/event-stream` when streaming.
pub(super) fn base(stream: bool) -> Vec<(String, String)> {
    let mut h = vec![("content-type".to_owned(), "application/json".to_owned())];
    if stream {
        h.push(("accept".to_owned(), "text/event-stream".to_owned()));
    }
    h
}

/// Adds the credential (SPEC §6.3): an API key in `key_header` (`None`: as a bearer token), an
/// OAuth token always as `Authorization: Bearer`.
pub(super) fn add_credential(
    headers: &mut Vec<(String, String)>,
    credential: Credential<'_>,
    key_header: Option<&str>,
) {
    match (credential, key_header) {
        (Credential::ApiKey(key), Some(name)) => headers.push((name.to_owned(), key.to_owned())),
        (Credential::ApiKey(token) | Credential::OAuth(token), _) => {
            headers.push(("authorization".to_owned(), format!("Bearer {token}")));
        }
        (Credential::None, _) => {}
    }
}

/// Adds the backend's `custom-headers` by the merging rule of the module docs.
pub(super) fn add_custom(headers: &mut Vec<(String, String)>, settings: &Settings) {
    let Some(custom) = &settings.custom_headers else {
        return;
    };
    for (name, value) in custom {
        let existing = headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        match existing {
            Some((_, v)) if LIST_HEADERS.iter().any(|l| l.eq_ignore_ascii_case(name)) => {
                if !v.split(',').any(|part| part.trim() == value.trim()) {
                    v.push(',');
                    v.push_str(value);
                }
            }
            Some(slot) => *slot = (name.clone(), value.clone()),
            None => headers.push((name.clone(), value.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings {
            custom_headers: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Settings::default()
        }
    }

    #[test]
    fn credentials_go_in_the_protocol_header() {
        let mut h = Vec::new();
        add_credential(&mut h, Credential::ApiKey("k"), Some("x-api-key"));
        add_credential(&mut h, Credential::ApiKey("k2"), None);
        add_credential(&mut h, Credential::OAuth("t"), Some("x-api-key"));
        add_credential(&mut h, Credential::None, Some("x-api-key"));
        assert_eq!(
            h,
            vec![
                ("x-api-key".to_owned(), "k".to_owned()),
                ("authorization".to_owned(), "Bearer k2".to_owned()),
                ("authorization".to_owned(), "Bearer t".to_owned()),
            ]
        );
    }

    #[test]
    fn custom_headers_are_added_replace_same_names_and_merge_lists() {
        let mut h = base(true);
        h.push(("anthropic-beta".to_owned(), "oauth-2025-04-20".to_owned()));
        add_custom(
            &mut h,
            &settings(&[
                ("Content-Type", "application/json; charset=utf-8"),
                ("X-Team", "a"),
                ("Anthropic-Beta", "files-api-2025-04-14"),
            ]),
        );
        assert_eq!(
            h,
            vec![
                (
                    "Content-Type".to_owned(),
                    "application/json; charset=utf-8".to_owned()
                ),
                ("accept".to_owned(), "text/event-stream".to_owned()),
                (
                    "anthropic-beta".to_owned(),
                    "oauth-2025-04-20,files-api-2025-04-14".to_owned()
                ),
                ("X-Team".to_owned(), "a".to_owned()),
            ]
        );
    }

    #[test]
    fn no_custom_headers_changes_nothing() {
        let mut h = base(false);
        add_custom(&mut h, &Settings::default());
        assert_eq!(h, base(false));
    }
}
