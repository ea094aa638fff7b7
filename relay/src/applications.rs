//! What crosses with applications: the business hall's requests (a JSON
//! array, one action each, as the HTTP routes of `api.md` take them) and the
//! service's answers (one file per requests file).
//!
//! ```json
//! [{"action": "register", "application": {"id": "A1", "kind": "load", ...}},
//!  {"action": "reserve", "id": "A1", "scheme": 1},
//!  {"action": "release", "id": "A1"}]
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sealed::{Rejection, Rule};

/// One request: what `PUT /v1/applications/{id}`, `POST` and `DELETE
/// /v1/applications/{id}/reservation` do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Register or update an application (its JSON as `api.md` has it, with
    /// its `id`); the answer is its ranking.
    Register {
        /// The application.
        application: Value,
    },
    /// Reserve capacity for a scheme: a rank of the last ranking, or supplies.
    Reserve {
        /// The application id.
        id: String,
        /// The rank of a scheme in its last ranking.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scheme: Option<i64>,
        /// Connection points instead of `scheme`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        supplies: Option<Vec<String>>,
    },
    /// Release the application's reservation.
    Release {
        /// The application id.
        id: String,
    },
}

impl Action {
    /// The application the action is about (`None` for a register without a
    /// string `id`, which its answer explains).
    pub fn application_id(&self) -> Option<&str> {
        match self {
            Action::Register { application } => application["id"].as_str(),
            Action::Reserve { id, .. } | Action::Release { id } => Some(id),
        }
    }

    /// The action's name.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Register { .. } => "register",
            Action::Reserve { .. } => "reserve",
            Action::Release { .. } => "release",
        }
    }
}

/// Reads a requests body: a JSON array of actions, as many as the header's rows.
pub fn decode_actions(body: &[u8], rows: u64) -> Result<Vec<Action>, Rejection> {
    let values: Vec<Value> = serde_json::from_slice(body)
        .map_err(|e| Rejection::new(Rule::Body, format!("not a JSON array of actions: {e}")))?;
    let actions = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::from_value(v).map_err(|e| Rejection::new(Rule::Body, format!("[{i}]: {e}")))
        })
        .collect::<Result<Vec<Action>, _>>()?;
    if actions.len() as u64 != rows {
        return Err(Rejection::new(
            Rule::Body,
            format!(
                "the body holds {} actions, the header says {rows}",
                actions.len()
            ),
        ));
    }
    Ok(actions)
}

/// The file an answer replies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InReplyTo {
    /// Its stream.
    pub stream: String,
    /// Its number.
    pub sequence: u64,
}

/// The service's answer to one action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionAnswer {
    /// `register`, `reserve` or `release`.
    pub action: String,
    /// The application.
    pub id: Option<String>,
    /// The HTTP status the route would have answered.
    pub status: u16,
    /// The route's body: a ranking, a reservation, or `{"error": ...}`.
    pub body: Value,
    /// The application as `GET /v1/applications/{id}` shows it afterwards
    /// (status, last ranking, reservation, audit trail); `null` if unknown.
    pub application: Value,
    /// The events of this application so far (`GET /v1/events`' entries).
    pub events: Vec<Value>,
}

/// An answer file's body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answers {
    /// The requests file answered.
    pub in_reply_to: InReplyTo,
    /// One per action, in order; empty when the file was refused whole.
    pub answers: Vec<ActionAnswer>,
    /// Why the file was refused whole (its body was not actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_read_back_and_a_bad_one_is_named() {
        let body = br#"[{"action":"register","application":{"id":"A1"}},{"action":"reserve","id":"A1","scheme":1},{"action":"release","id":"A1"}]"#;
        let actions = decode_actions(body, 3).unwrap();
        assert_eq!(
            actions[1],
            Action::Reserve {
                id: "A1".into(),
                scheme: Some(1),
                supplies: None
            }
        );
        assert_eq!(actions[0].application_id(), Some("A1"));
        let text = serde_json::to_string(&actions).unwrap();
        assert_eq!(decode_actions(text.as_bytes(), 3).unwrap(), actions);
        let bad = decode_actions(br#"[{"action":"cancel","id":"A1"}]"#, 1).unwrap_err();
        assert!(
            bad.message.starts_with("[0]: unknown variant `cancel`"),
            "{bad}"
        );
        assert!(
            decode_actions(b"{}", 1)
                .unwrap_err()
                .message
                .starts_with("not a JSON array")
        );
        assert!(
            decode_actions(b"[]", 2)
                .unwrap_err()
                .message
                .contains("header says 2")
        );
    }
}
