//! Test helpers shared by the protocol tests: targets, conversations, and raw SSE text run
//! through the real [`SseDecoder`](crate::shell::sse::SseDecoder) and a protocol decoder.

use serde_json::{Map, Value};

use super::{Chunk, Credential, Role, StoredReasoning, StreamDecoder, Target, Turn};
use crate::profile::settings::Settings;
use crate::provider::Protocol;
use crate::shell::sse::SseDecoder;

/// Owns what a [`Target`] borrows.
pub(super) struct Fixture {
    pub settings: Settings,
    pub params: Map<String, Value>,
}

impl Fixture {
    pub fn new(params: &Value) -> Fixture {
        Fixture {
            settings: Settings::default(),
            params: params.as_object().cloned().unwrap_or_default(),
        }
    }

    pub fn target<'a>(
        &'a self,
        protocol: Protocol,
        provider: &'a str,
        credential: Credential<'a>,
    ) -> Target<'a> {
        Target {
            protocol,
            provider,
            base_url: "https://api.example.com",
            model: "m-1",
            model_params: &self.params,
            settings: &self.settings,
            credential,
        }
    }
}

/// user, assistant (with reasoning from `provider`, signed), user.
pub(super) fn three_turns(provider: &str) -> Vec<Turn> {
    vec![
        Turn {
            role: Role::User,
            text: "hi".to_owned(),
            reasoning: None,
        },
        Turn {
            role: Role::Assistant,
            text: "hello".to_owned(),
            reasoning: Some(StoredReasoning {
                provider: provider.to_owned(),
                text: "think".to_owned(),
                signature: Some("sig".to_owned()),
            }),
        },
        Turn {
            role: Role::User,
            text: "more".to_owned(),
            reasoning: None,
        },
    ]
}

/// Runs raw SSE text through the SSE decoder and `decoder`; a malformed event becomes
/// `Chunk::Text("<skipped>")` so tests can see it.
pub(super) fn decode(decoder: &mut dyn StreamDecoder, raw: &str) -> Vec<Chunk> {
    let mut sse = SseDecoder::default();
    let mut events = sse.feed(raw.as_bytes()).expect("test stream within limits");
    events.extend(sse.finish());
    events
        .iter()
        .flat_map(|e| {
            decoder
                .on_event(e)
                .unwrap_or_else(|_| vec![Chunk::Text("<skipped>".to_owned())])
        })
        .collect()
}
