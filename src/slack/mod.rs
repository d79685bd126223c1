//! Slack ChatOps, the pure half: checking that a request came from Slack ([`signature`]) and
//! turning the text after `/deploy` into a [`command::Command`] ([`command`]). Neither does I/O;
//! the HTTP handler that reads the form body and queues jobs sits on top of these.

pub mod command;
pub mod signature;
