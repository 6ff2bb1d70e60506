//! Which stored reasoning goes back to the provider (SPEC §3.1 `reasoning.*`, §5.8), shared by
//! the protocols that can carry it.
//!
//! Owns: the `reasoning.includeInContext` / `reasoning.stripFromContext` / same-provider rule.
//! Must not: decide how a protocol encodes the reasoning (each protocol file does).

use crate::profile::settings::StripFromContext;

use super::{Role, StoredReasoning, Target, Turn};

/// For each turn, the stored reasoning to send with it, or `None`.
///
/// Nothing is sent unless `reasoning.includeInContext` is true. Of the assistant turns,
/// `stripFromContext` keeps none (`all`, the default), every one (`none`) or only the last
/// assistant turn (`allButLast`); and a block is only ever sent to a backend of the provider
/// that produced it (SPEC §5.8).
pub(super) fn reasoning_to_send<'a>(
    t: &Target<'_>,
    turns: &'a [Turn],
) -> Vec<Option<&'a StoredReasoning>> {
    let include = t.settings.reasoning_include_in_context.unwrap_or(false);
    let strip = t
        .settings
        .reasoning_strip_from_context
        .unwrap_or(StripFromContext::All);
    let last_assistant = turns.iter().rposition(|turn| turn.role == Role::Assistant);
    turns
        .iter()
        .enumerate()
        .map(|(i, turn)| {
            if !include || turn.role != Role::Assistant {
                return None;
            }
            let kept = match strip {
                StripFromContext::All => false,
                StripFromContext::None => true,
                StripFromContext::AllButLast => Some(i) == last_assistant,
            };
            turn.reasoning
                .as_ref()
                .filter(|r| kept && r.provider == t.provider)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;
    use crate::profile::settings::Settings;
    use crate::provider::Protocol;
    use crate::shell::protocol::Credential;

    fn turn(role: Role, provider: Option<&str>) -> Turn {
        Turn {
            role,
            text: "t".to_owned(),
            reasoning: provider.map(|p| StoredReasoning {
                provider: p.to_owned(),
                text: "r".to_owned(),
                signature: None,
            }),
        }
    }

    fn sent(include: Option<bool>, strip: Option<StripFromContext>, turns: &[Turn]) -> Vec<bool> {
        let settings = Settings {
            reasoning_include_in_context: include,
            reasoning_strip_from_context: strip,
            ..Settings::default()
        };
        let params = Map::new();
        let t = Target {
            protocol: Protocol::Messages,
            provider: "anthropic",
            base_url: "http://x",
            model: "m",
            model_params: &params,
            settings: &settings,
            credential: Credential::None,
        };
        reasoning_to_send(&t, turns)
            .iter()
            .map(Option::is_some)
            .collect()
    }

    #[test]
    fn strip_modes_and_the_same_provider_rule() {
        let turns = [
            turn(Role::User, None),
            turn(Role::Assistant, Some("anthropic")),
            turn(Role::User, None),
            turn(Role::Assistant, Some("gemini")),
            turn(Role::User, None),
            turn(Role::Assistant, Some("anthropic")),
            turn(Role::User, None),
        ];
        let none = vec![false; 7];
        assert_eq!(sent(None, None, &turns), none);
        assert_eq!(
            sent(Some(false), Some(StripFromContext::None), &turns),
            none
        );
        assert_eq!(sent(Some(true), None, &turns), none);
        assert_eq!(sent(Some(true), Some(StripFromContext::All), &turns), none);
        assert_eq!(
            sent(Some(true), Some(StripFromContext::None), &turns),
            vec![false, true, false, false, false, true, false]
        );
        assert_eq!(
            sent(Some(true), Some(StripFromContext::AllButLast), &turns),
            vec![false, false, false, false, false, true, false]
        );
        // The last assistant turn came from another provider: nothing is sent.
        assert_eq!(
            sent(Some(true), Some(StripFromContext::AllButLast), &turns[..4]),
            vec![false; 4]
        );
    }
}
