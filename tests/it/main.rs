//! Integration tests: the real service on port 0 with its own SQLite database, real `git`, and
//! real OpenSSH `sshd` hosts on loopback addresses, each with its own `/srv`; fakes (wiremock)
//! only for Slack's and GitHub's APIs.

mod apps;
mod audit;
mod browser;
mod cli;
mod dashboard;
mod deploy;
mod ephemeral;
mod faults;
mod github;
mod helpers;
mod injection;
mod nginx;
mod operability;
mod recovery;
mod releases;
mod replicas;
mod slack;
mod slack_hostile;
mod sshd;
mod strategies;
mod webhook;
