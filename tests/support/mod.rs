//! What the test binaries of the upstream APIs and the metrics share: the OpenAI-compatible
//! stand-in, the router and request plumbing around it, and requests that make each serving
//! layer count its metric. Each binary declares `mod common;` beside `mod support;`.

pub mod chat;
pub mod events;
pub mod openai_standin;
pub mod scrape;
