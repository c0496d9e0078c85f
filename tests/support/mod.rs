//! What the `/api/chat` test binaries share: the OpenAI-compatible stand-in and the router
//! and request plumbing around it. Each binary declares `mod common;` beside `mod support;`.

pub mod chat;
pub mod openai_standin;
