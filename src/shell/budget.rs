//! The context budget (SPEC §5.8): which part of the history one request to one backend sends.
//!
//! Before each attempt the shell estimates the prompt — characters / 4, rounded up, for the
//! system prompt, every turn's text (and its stored reasoning when that is sent), and a
//! `continue` prefill — and, when it exceeds the backend's `context-limit` minus the reply
//! budget, leaves out the oldest exchanges, whole user/assistant exchanges at a time. The system
//! prompt and the latest user message are never left out; with no limit known nothing is.
//!
//! Owns: the heuristic and the choice. Must not: change the history (the session keeps it
//! whole, so a later backend with a larger window sees everything), print, or know about
//! backends beyond the numbers it is given.

use serde_json::{Map, Value};

use crate::shell::protocol::{Role, Turn};

/// The reply budget when `modelParams` names none (SPEC §5.8).
pub const DEFAULT_REPLY_BUDGET: u64 = 4096;

/// Tokens of a text by the documented heuristic: characters / 4, rounded up (SPEC §5.8).
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// The reply budget: `max_tokens`, else `max_completion_tokens` (else Gemini's
/// `maxOutputTokens`, which some profiles spell directly) from `modelParams`, else 4096.
pub fn reply_budget(params: &Map<String, Value>) -> u64 {
    ["max_tokens", "max_completion_tokens", "maxOutputTokens"]
        .iter()
        .find_map(|k| params.get(*k).and_then(Value::as_u64))
        .unwrap_or(DEFAULT_REPLY_BUDGET)
}

/// The limit that bounds one backend's prompt: the smaller of the backend's own
/// `context-limit` and the layered one (a load balancer's or the session's), SPEC §3 "caps the
/// context budget at min(L, B)". `None` when neither is known.
pub fn effective_limit(own: Option<u64>, layered: Option<u64>) -> Option<u64> {
    match (own, layered) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What one request sends of the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// Index of the first turn sent; the turns before it are left out.
    pub start: usize,
    /// How many exchanges were left out.
    pub left_out: usize,
}

/// Chooses the oldest turn to send so the prompt fits `limit - reply_budget`.
///
/// `fixed` is what is always sent besides the turns (system prompt, prefill), in tokens;
/// `cost` gives one turn's tokens. An exchange is a user turn with the replies that follow it,
/// up to the next user turn. The last turn (the latest user message) is always sent, even when
/// it alone does not fit: the provider then answers with a context-length error and the engine
/// looks for a larger window (SPEC §5.5).
pub fn fit(
    turns: &[Turn],
    fixed: u64,
    cost: &dyn Fn(&Turn) -> u64,
    limit: Option<u64>,
    reply_budget: u64,
) -> Fit {
    let all = Fit {
        start: 0,
        left_out: 0,
    };
    let Some(limit) = limit.filter(|&l| l > 0) else {
        return all;
    };
    let available = limit.saturating_sub(reply_budget);
    let costs: Vec<u64> = turns.iter().map(cost).collect();
    let mut total = fixed.saturating_add(costs.iter().sum::<u64>());
    let last = turns.len().saturating_sub(1);
    let mut fit = all;
    while total > available && fit.start < last {
        // The exchange ends where the next user turn starts (at the latest, the last turn).
        let end = turns[fit.start + 1..=last]
            .iter()
            .position(|t| t.role == Role::User)
            .map_or(last, |p| fit.start + 1 + p);
        total -= costs[fit.start..end].iter().sum::<u64>();
        fit.start = end;
        fit.left_out += 1;
    }
    fit
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn turn(role: Role, chars: usize) -> Turn {
        Turn {
            role,
            text: "x".repeat(chars),
            reasoning: None,
        }
    }

    /// `n` exchanges of 40 characters (10 tokens) each way, then a latest message of 40.
    fn history(n: usize) -> Vec<Turn> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(turn(Role::User, 40));
            v.push(turn(Role::Assistant, 40));
        }
        v.push(turn(Role::User, 40));
        v
    }

    fn text_cost(t: &Turn) -> u64 {
        estimate_tokens(&t.text)
    }

    #[test]
    fn estimates_round_up_per_text() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abc"), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("éééé"), 1, "characters, not bytes");
    }

    #[test]
    fn without_a_limit_nothing_is_left_out() {
        let h = history(50);
        assert_eq!(
            fit(&h, 0, &text_cost, None, 4096),
            Fit {
                start: 0,
                left_out: 0
            }
        );
        assert_eq!(fit(&h, 0, &text_cost, Some(0), 0).left_out, 0);
    }

    #[test]
    fn a_history_that_fits_is_sent_whole() {
        // 3 exchanges (60 tokens) + latest (10) + system (5) = 75 ≤ 100 - 25.
        let h = history(3);
        assert_eq!(
            fit(&h, 5, &text_cost, Some(100), 25),
            Fit {
                start: 0,
                left_out: 0
            }
        );
        // One token more and the oldest exchange goes.
        assert_eq!(
            fit(&h, 6, &text_cost, Some(100), 25),
            Fit {
                start: 2,
                left_out: 1
            }
        );
    }

    #[test]
    fn oldest_exchanges_go_first_whole_pairs_at_a_time() {
        let h = history(5); // 5 × 20 + 10 = 110 tokens
        let f = fit(&h, 0, &text_cost, Some(60), 10); // 50 available: latest + 2 exchanges
        assert_eq!(
            f,
            Fit {
                start: 6,
                left_out: 3
            }
        );
        assert_eq!(h[f.start].role, Role::User, "an exchange is never split");
    }

    #[test]
    fn the_latest_message_and_the_system_prompt_always_stay() {
        let h = history(4);
        // Nothing fits, not even the latest message: only it is sent.
        let f = fit(&h, 1000, &text_cost, Some(100), 4096);
        assert_eq!(
            f,
            Fit {
                start: 8,
                left_out: 4
            }
        );
        // A single message is never left out.
        let one = history(0);
        assert_eq!(
            fit(&one, 0, &text_cost, Some(1), 0),
            Fit {
                start: 0,
                left_out: 0
            }
        );
    }

    #[test]
    fn the_cost_function_decides_what_counts() {
        let mut h = history(2);
        h[1].text = "y".repeat(400); // a long first reply
        let f = fit(&h, 0, &text_cost, Some(100), 50);
        assert_eq!(f.left_out, 1, "dropping the long exchange is enough");
        let free = |_: &Turn| 0;
        assert_eq!(fit(&h, 0, &free, Some(100), 50).left_out, 0);
    }

    #[test]
    fn reply_budget_reads_model_params() {
        let m = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(reply_budget(&Map::new()), 4096);
        assert_eq!(reply_budget(&m(json!({"max_tokens": 100}))), 100);
        assert_eq!(reply_budget(&m(json!({"max_completion_tokens": 200}))), 200);
        assert_eq!(
            reply_budget(&m(json!({"max_tokens": 1, "max_completion_tokens": 2}))),
            1
        );
        assert_eq!(reply_budget(&m(json!({"max_tokens": "many"}))), 4096);
    }

    #[test]
    fn the_limit_is_the_smaller_of_backend_and_layered() {
        assert_eq!(effective_limit(None, None), None);
        assert_eq!(effective_limit(Some(8), None), Some(8));
        assert_eq!(effective_limit(None, Some(9)), Some(9));
        assert_eq!(effective_limit(Some(8), Some(3)), Some(3));
        assert_eq!(effective_limit(Some(3), Some(8)), Some(3));
    }
}
