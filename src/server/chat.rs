//! The OpenAI-compatible chat client and the three prompt modes of the original server (their
//! wording is in [`super::prompts`], configurable).
//!
//! `POST {base}/chat/completions` with `{"model", "messages": [system, user], "temperature":
//! 0.2}`; the answer is `choices[0].message.content`, trimmed. With streaming the same request
//! carries `"stream": true` and the answer arrives as server-sent `data:` lines whose
//! `choices[0].delta.content` pieces are forwarded as they come. Chat has its own, longer
//! timeout than embeddings: answers take tens of seconds.
//!
//! Every call passes the LLM's [`Guard`] (circuit breaker, bound on calls in flight); a
//! streamed answer keeps its slot until the stream ends. Calls are not retried: an answer
//! costs tokens and tens of seconds, and the client can ask again.

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};

use super::prompts::{render, Prompts};
use super::upstream::{self, Call, Guard, GuardConfig, Outcome, Refusal};

/// Why an answer could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChatError {
    #[error("LLM API error: {status} - {body}")]
    Status { status: u16, body: String },
    #[error("LLM API unreachable: {0}")]
    Transport(String),
    #[error("LLM API answer has no content: {0}")]
    Decode(String),
    /// Not sent: the breaker is open or every slot is taken.
    #[error(transparent)]
    Refused(#[from] Refusal),
}

impl ChatError {
    /// Whether the LLM was not called at all (503) rather than failing (502).
    pub fn refused(&self) -> bool {
        matches!(self, ChatError::Refused(_))
    }
}

/// Who answers: the prompt mode.
#[derive(Debug, Clone, PartialEq)]
pub enum Voice {
    /// A neutral assistant.
    Neutral,
    /// Role-play one speaker, from their profile.
    Persona { name: String, profile: String },
    /// A dialogue between two speakers, from both profiles.
    Discussion {
        first: (String, String),
        second: (String, String),
    },
}

/// The system and user messages for `question` over `context` (the SOURCES blocks), from the
/// templates of `prompts` (see [`super::prompts`]).
pub fn messages(
    prompts: &Prompts,
    voice: &Voice,
    question: &str,
    context: &str,
) -> (String, String) {
    let common = [("question", question), ("context", context)];
    let both = |system: &str, user: &str, values: &[(&str, &str)]| {
        (render(system, values), render(user, values))
    };
    match voice {
        Voice::Neutral => both(&prompts.neutral_system, &prompts.neutral_user, &common),
        Voice::Persona { name, profile } => both(
            &prompts.persona_system,
            &prompts.persona_user,
            &[common[0], common[1], ("name", name), ("profile", profile)],
        ),
        Voice::Discussion { first, second } => both(
            &prompts.discussion_system,
            &prompts.discussion_user,
            &[
                common[0],
                common[1],
                ("name1", &first.0),
                ("profile1", &first.1),
                ("name2", &second.0),
                ("profile2", &second.1),
            ],
        ),
    }
}

/// The chat client.
#[derive(Clone)]
pub struct ChatClient {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    model: String,
    guard: Guard,
}

/// Long enough for a long answer, short enough that a hung upstream frees its request.
pub const CHAT_TIMEOUT: Duration = Duration::from_secs(120);

impl ChatClient {
    pub fn new(base_url: &str, api_key: Option<String>, model: &str) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(CHAT_TIMEOUT)
            .pool_max_idle_per_host(8)
            .build()
            .expect("a TLS backend is compiled in");
        ChatClient {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            model: model.to_owned(),
            guard: Guard::new(upstream::LLM, GuardConfig::new(8, Default::default())),
        }
    }

    /// The same client behind `guard` (breaker and concurrency bound from the settings).
    pub fn with_guard(self, guard: Guard) -> Self {
        ChatClient { guard, ..self }
    }

    /// The upstream's breaker and slots.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    fn request(&self, system: &str, user: &str, stream: bool) -> reqwest::RequestBuilder {
        let mut body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "temperature": 0.2,
        });
        if stream {
            body["stream"] = json!(true);
        }
        let mut request = self
            .client
            .post(format!("{}/chat/completions", self.base_url))
            .json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        request
    }

    async fn send(
        &self,
        system: &str,
        user: &str,
        stream: bool,
    ) -> Result<(reqwest::Response, Call), ChatError> {
        let call = self.guard.admit().await?;
        let response = match self.request(system, user, stream).send().await {
            Ok(response) => response,
            Err(e) => {
                call.finish(Outcome::Transient);
                return Err(ChatError::Transport(e.to_string()));
            }
        };
        let status = response.status();
        if !status.is_success() {
            let transient = status.as_u16() == 429 || status.is_server_error();
            call.finish(if transient {
                Outcome::Transient
            } else {
                Outcome::Rejected
            });
            let body = response.text().await.unwrap_or_default();
            return Err(ChatError::Status {
                status: status.as_u16(),
                body: body.chars().take(300).collect(),
            });
        }
        Ok((response, call))
    }

    /// The whole answer.
    pub async fn answer(&self, system: &str, user: &str) -> Result<String, ChatError> {
        let (response, call) = self.send(system, user, false).await?;
        let value: Result<Value, _> = response.json().await;
        let value = match value {
            Ok(value) => {
                call.finish(Outcome::Ok);
                value
            }
            Err(e) => {
                let outcome = if e.is_decode() {
                    Outcome::Rejected
                } else {
                    Outcome::Transient
                };
                call.finish(outcome);
                return Err(ChatError::Decode(e.to_string()));
            }
        };
        value
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .map(|s| s.trim().to_owned())
            .ok_or_else(|| ChatError::Decode(value.to_string().chars().take(200).collect()))
    }

    /// The answer as it is written, piece by piece.
    pub async fn answer_stream(
        &self,
        system: &str,
        user: &str,
    ) -> Result<impl Stream<Item = Result<String, ChatError>> + Send + 'static, ChatError> {
        let (response, call) = self.send(system, user, true).await?;
        // The call is counted when the stream starts; its slot is held until it ends.
        let slot = call.finish_keeping_slot(Outcome::Ok);
        let mut bytes = response.bytes_stream();
        Ok(async_stream(move |tx| async move {
            let _slot = slot;
            let mut lines = SseLines::default();
            while let Some(chunk) = bytes.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(ChatError::Transport(e.to_string()))).await;
                        return;
                    }
                };
                match lines.feed(&chunk) {
                    Ok(Feed { pieces, done }) => {
                        for piece in pieces {
                            if tx.send(Ok(piece)).await.is_err() {
                                return; // the client went away
                            }
                        }
                        if done {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            // An LLM that ignores `"stream": true` answers with one JSON document.
            if let Some(answer) = lines.finish() {
                let _ = tx.send(answer).await;
            }
        }))
    }
}

/// Longest line accepted from an LLM stream. SSE lines carry a few words each; a stream that
/// never sends a newline is cut off here instead of growing a buffer without bound.
const MAX_LINE: usize = 1 << 20;

/// What one chunk of an LLM stream yielded.
struct Feed {
    pieces: Vec<String>,
    done: bool,
}

/// Splits an LLM's server-sent events into lines and their `delta` pieces. Bytes, not text: a
/// UTF-8 character may be split between two reads, and only a complete line is decoded. Each
/// byte is looked at once, so a long stream costs linear time.
#[derive(Default)]
struct SseLines {
    /// The unterminated last line.
    partial: Vec<u8>,
    /// Whether any `data:` line came: if none does, the body is a non-streamed answer.
    streamed: bool,
    /// The body while no `data:` line has come, to read it as a whole answer at the end.
    body: Vec<u8>,
}

impl SseLines {
    fn feed(&mut self, chunk: &[u8]) -> Result<Feed, ChatError> {
        let mut feed = Feed {
            pieces: Vec::new(),
            done: false,
        };
        if !self.streamed {
            if self.body.len() + chunk.len() > MAX_LINE {
                return Err(ChatError::Decode(format!(
                    "the LLM sent over {MAX_LINE} bytes without a stream event"
                )));
            }
            self.body.extend_from_slice(chunk);
        }
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let line = std::mem::take(&mut self.partial);
            if self.line(&line, &mut feed.pieces) {
                feed.done = true;
                return Ok(feed);
            }
        }
        if self.partial.len() + rest.len() > MAX_LINE {
            return Err(ChatError::Decode(format!(
                "the LLM stream sent a line over {MAX_LINE} bytes"
            )));
        }
        self.partial.extend_from_slice(rest);
        Ok(feed)
    }

    /// Handles one complete line; true at `[DONE]`.
    fn line(&mut self, line: &[u8], pieces: &mut Vec<String>) -> bool {
        let Ok(line) = std::str::from_utf8(line) else {
            return false;
        };
        let Some(data) = line.trim().strip_prefix("data:").map(str::trim) else {
            return false;
        };
        self.streamed = true;
        self.body = Vec::new();
        if data == "[DONE]" {
            return true;
        }
        let piece = serde_json::from_str::<Value>(data).ok().and_then(|v| {
            v.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        pieces.extend(piece.filter(|p| !p.is_empty()));
        false
    }

    /// At the end of a body that had no stream events: its answer as one piece, or an error
    /// (sent as an `error` event) when it holds none.
    fn finish(self) -> Option<Result<String, ChatError>> {
        if self.streamed {
            return None;
        }
        let answer = serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| {
                v.pointer("/choices/0/message/content")
                    .and_then(Value::as_str)
                    .map(|s| s.trim().to_owned())
            });
        Some(answer.ok_or_else(|| {
            ChatError::Decode("the LLM answered without a stream and without an answer".into())
        }))
    }
}

/// A stream fed by a task through a small channel.
fn async_stream<T, F, Fut>(body: F) -> impl Stream<Item = T> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(body(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_lines_split_anywhere_give_the_same_pieces() {
        let body = "data: {\"choices\":[{\"delta\":{\"content\":\"Grüß\"}}]}\n\n\
                    data: {\"choices\":[{\"delta\":{\"content\":\" dich\"}}]}\n\ndata: [DONE]\n";
        for cut in 0..body.len() {
            let mut lines = SseLines::default();
            let mut pieces = Vec::new();
            let mut done = false;
            for part in [&body.as_bytes()[..cut], &body.as_bytes()[cut..]] {
                let feed = lines.feed(part).unwrap();
                pieces.extend(feed.pieces);
                done |= feed.done;
                if done {
                    break;
                }
            }
            assert_eq!(pieces.concat(), "Grüß dich", "cut at {cut}");
            assert!(done);
        }
    }

    #[test]
    fn a_stream_without_newlines_is_cut_off() {
        let mut lines = SseLines::default();
        lines.feed(b"data: {").unwrap();
        let mut failed = false;
        for _ in 0..(MAX_LINE / 4096 + 2) {
            if lines.feed(&[b'x'; 4096]).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "a line over MAX_LINE is refused");
    }

    #[test]
    fn a_non_streamed_answer_is_taken_whole() {
        let mut lines = SseLines::default();
        let body = "{\n  \"choices\": [{\"message\": {\"content\": \" Antwort \"}}]\n}\n";
        assert!(lines.feed(body.as_bytes()).unwrap().pieces.is_empty());
        assert_eq!(lines.finish().unwrap().unwrap(), "Antwort");
        let mut empty = SseLines::default();
        empty.feed(b"{}").unwrap();
        assert!(empty.finish().unwrap().is_err());
    }

    #[test]
    fn each_voice_names_its_people_and_keeps_the_sources() {
        let (system, user) = messages(
            &Prompts::default(),
            &Voice::Neutral,
            "Was ist X?",
            "SOURCE: Episode 1",
        );
        assert!(system.contains("(Episode 281, 12:38-17:19)"));
        assert!(user.starts_with("QUESTION:\nWas ist X?\n\nSOURCES:\nSOURCE: Episode 1"));
        let persona = Voice::Persona {
            name: "Tim".into(),
            profile: "# Profil".into(),
        };
        let (system, user) = messages(&Prompts::default(), &persona, "q", "c");
        assert!(
            system.contains("You are Tim")
                && system.contains("# Profil")
                && user.contains("as Tim")
        );
        let talk = Voice::Discussion {
            first: ("A".into(), "pa".into()),
            second: ("B".into(), "pb".into()),
        };
        let (system, user) = messages(&Prompts::default(), &talk, "q", "c");
        assert!(system.contains("pa") && system.contains("pb") && user.contains("between A and B"));
    }
}
