//! slipway: signed webhooks and chat commands become durable deploy jobs, run over SSH.
//!
//! The modules follow the data flow (see `ARCHITECTURE.md`): [`http`] receives and
//! [`signature`] verifies, [`gitops`] interprets, [`planner`] decides, [`queue`] and [`store`]
//! persist, [`worker`] executes, [`deploy`] talks to hosts.

pub mod actions;
pub mod app;
pub mod cli;
pub mod clock;
pub mod coalesce;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod deploy;
pub mod domain;
pub mod ephemeral;
pub mod error;
pub mod github;
pub mod gitops;
pub mod housekeeping;
pub mod http;
pub mod mask;
pub mod notify;
pub mod overview;
pub mod planner;
pub mod queue;
pub mod releases;
pub mod requests;
pub mod scheduler;
pub mod signature;
pub mod slack;
pub mod store;
pub mod telemetry;
pub mod worker;
