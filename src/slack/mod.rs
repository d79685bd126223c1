//! Slack ChatOps. The pure parts: checking that a request came from Slack ([`signature`]),
//! turning the text after `/deploy` into a [`command::Command`] ([`command`]) and every text
//! slipway says in Slack ([`messages`]). Then carrying a command out against the queue and the
//! store ([`execute`]) and the calls to Slack's Web API ([`api`]). The routes that receive
//! Slack's requests are in `http/slack.rs`; the channel messages that follow jobs in
//! `notify/slack.rs`.

pub mod api;
pub mod command;
pub mod execute;
pub mod messages;
pub mod signature;
