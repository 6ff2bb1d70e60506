//! `llxprt auth status [PROVIDER]` and the session's `/auth` (SPEC §6.3): each stored bucket
//! with its kind, expiry, whether it has a refresh token, its cooldown and last use from the
//! shared engine state (SPEC §5.9, keys `bucket/<provider>/<bucket>`).
//!
//! Owns: the report's fields (JSON) and its text form. Must not: show a key or token (only
//! their presence), or change the state.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::store::{self, Listed};
use crate::auth::credentials::StoredCredential;
use crate::engine::state::SharedState;
use crate::provider::Provider;
use crate::timefmt::rfc3339;

/// One row per stored bucket, of `only` or of every provider.
pub fn report(
    root: &std::path::Path,
    only: Option<&Provider>,
    shared: &SharedState,
    now: u64,
) -> Vec<Value> {
    store::list(root, only)
        .into_iter()
        .map(|l| row(&l, shared, now))
        .collect()
}

fn row(l: &Listed, shared: &SharedState, now: u64) -> Value {
    let state = shared.buckets.get(&format!("{}/{}", l.provider, l.bucket));
    let cooldown = state
        .and_then(|s| s.cooldown_until)
        .filter(|&u| u > now)
        .map(rfc3339);
    let last_used = state.and_then(|s| s.stats.last_used).map(rfc3339);
    let mut o = json!({
        "provider": l.provider,
        "bucket": l.bucket,
        "path": l.path.display().to_string(),
        "cooldown_until": cooldown,
        "last_used": last_used,
    });
    match &l.credential {
        Ok(StoredCredential::Apikey { .. }) => {
            o["kind"] = json!("apikey");
            o["expires_at"] = Value::Null;
            o["expired"] = Value::Null;
            o["refresh_token"] = Value::Null;
        }
        Ok(StoredCredential::Oauth {
            expires_at_ms,
            refresh_token,
            ..
        }) => {
            o["kind"] = json!("oauth");
            o["expires_at"] = json!(expires_at_ms.map(rfc3339));
            o["expired"] = json!(expires_at_ms.map(|t| t <= now));
            o["refresh_token"] = json!(refresh_token.is_some());
        }
        Err(problem) => {
            o["kind"] = json!("unreadable");
            o["problem"] = json!(problem);
        }
    }
    o
}

/// The text form: one line per bucket.
pub fn lines(rows: &[Value]) -> Vec<String> {
    if rows.is_empty() {
        return vec![
            "no bucket logins stored; log in with llxprt auth login PROVIDER BUCKET".to_string(),
        ];
    }
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    rows.iter()
        .map(|r| {
            let mut line = format!(
                "{}/{}  {}",
                s(&r["provider"]),
                s(&r["bucket"]),
                s(&r["kind"])
            );
            match s(&r["kind"]).as_str() {
                "oauth" => {
                    let expires = match (&r["expires_at"], &r["expired"]) {
                        (Value::String(t), Value::Bool(true)) => format!("expired {t}"),
                        (Value::String(t), _) => format!("expires {t}"),
                        _ => "expiry unknown".to_string(),
                    };
                    let refresh = if r["refresh_token"] == json!(true) {
                        "yes"
                    } else {
                        "no"
                    };
                    let _ = write!(line, "  {expires}  refresh token: {refresh}");
                }
                "unreadable" => {
                    let _ = write!(line, "  ({})", s(&r["problem"]));
                }
                _ => {}
            }
            let cooldown = r["cooldown_until"]
                .as_str()
                .map_or_else(|| "none".to_string(), |u| format!("until {u}"));
            let used = r["last_used"].as_str().unwrap_or("never");
            let _ = write!(line, "  cooldown: {cooldown}  last used: {used}");
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::BucketState;

    #[test]
    fn rows_show_presence_never_values() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let oauth = StoredCredential::Oauth {
            version: 1,
            access_token: "at-secret".into(),
            refresh_token: Some("rt-secret".into()),
            expires_at_ms: Some(1000),
            token_url: None,
            client_id: None,
            scope: None,
        };
        store::write(root, "anthropic", "team1", &oauth).unwrap();
        let key = StoredCredential::Apikey {
            version: 1,
            key: "sk-secret".into(),
        };
        store::write(root, "openai", "k", &key).unwrap();
        let mut shared = SharedState::default();
        let mut b = BucketState {
            cooldown_until: Some(9000),
            ..BucketState::default()
        };
        b.stats.last_used = Some(500);
        shared.buckets.insert("openai/k".into(), b);
        let rows = report(root, None, &shared, 2000);
        let text = lines(&rows).join("\n");
        let all = format!("{text}{}", Value::Array(rows.clone()));
        assert!(!all.contains("secret"), "{all}");
        // Providers in the table's order: openai first.
        assert_eq!(rows[1]["expired"], json!(true));
        assert_eq!(rows[0]["cooldown_until"], json!(rfc3339(9000)));
        assert!(
            text.contains(
                "anthropic/team1  oauth  expired 1970-01-01T00:00:01.000Z  refresh token: yes  cooldown: none  last used: never"
            ),
            "{text}"
        );
        assert!(text.contains("openai/k  apikey  cooldown: until"), "{text}");
        let only = crate::provider::find("openai").unwrap();
        assert_eq!(report(root, Some(only), &shared, 2000).len(), 1);
    }
}
