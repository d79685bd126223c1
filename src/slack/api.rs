//! The calls slipway makes to Slack: post a message to a channel, a thread or a person, and
//! edit it later (`chat.postMessage`, `chat.update`, with the bot token), and answer an interaction through
//! the `response_url` Slack sent with it (no token: the URL is the credential). Built on
//! slack-morphism's client and models.
//!
//! Boundaries: requests from Slack come in through `http/slack.rs`; this module only talks
//! outwards and decides nothing. Callers bound each call's time (the notifier seam gives every
//! notifier a timeout; the interaction handler its own). A rate limit (HTTP 429) is retried after
//! Slack's `Retry-After`, up to [`RATE_LIMIT_RETRIES`] times (slack-morphism's rate control,
//! which also paces calls to each method's tier); Slack's `ok: false` refusals
//! (`channel_not_found`, `not_in_channel`...) would only fail again, so they come back as errors
//! for the caller to log and count.

use std::fmt;
use std::sync::Arc;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use slack_morphism::api::{
    SlackApiChatPostMessageRequest, SlackApiChatUpdateRequest, SlackApiPostWebhookMessageRequest,
};
use slack_morphism::hyper_tokio::{SlackClientHyperConnector, SlackClientHyperHttpsConnector};
use slack_morphism::prelude::SlackApiRateControlConfig;
use slack_morphism::{
    SlackApiToken, SlackApiTokenValue, SlackChannelId, SlackClient, SlackMessageContent, SlackTs,
};

/// Retries of a call Slack answered 429 (rate limited).
pub const RATE_LIMIT_RETRIES: usize = 3;

/// A client for Slack's Web API at the configured base URL. Cheap to clone: clones share one
/// connection pool.
#[derive(Clone)]
pub struct SlackApi {
    client: Arc<SlackClient<SlackClientHyperHttpsConnector>>,
}

impl fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackApi").finish_non_exhaustive()
    }
}

/// Where a posted message is, to edit it later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
}

/// A failed call, in words (Slack's error code, or why there was no answer).
#[derive(Debug, thiserror::Error)]
#[error("{call} failed: {message}")]
pub struct SlackError {
    call: &'static str,
    message: String,
}

impl SlackApi {
    /// `api_url` is the Web API's base (`https://slack.com/api`), without a trailing `/`.
    pub fn new(api_url: &str) -> anyhow::Result<Self> {
        // slack-morphism's own connector is https-only; this one also speaks plain http, which
        // only a loopback fake of Slack uses (the configured URL and Slack's response URLs are
        // https in production).
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .context("loading the system's TLS root certificates")?
            .https_or_http()
            .enable_http1()
            .build();
        let rate_control = SlackApiRateControlConfig::new().with_max_retries(RATE_LIMIT_RETRIES);
        let connector = SlackClientHyperConnector::with_connector(https)
            .with_slack_api_url(api_url)
            .with_rate_control(rate_control);
        Ok(Self {
            client: Arc::new(SlackClient::new(connector)),
        })
    }

    /// `chat.postMessage` to `channel` (a user id sends a direct message from the bot).
    pub async fn post(
        &self,
        token: &SecretString,
        channel: &str,
        content: SlackMessageContent,
    ) -> Result<Posted, SlackError> {
        let request =
            SlackApiChatPostMessageRequest::new(SlackChannelId(channel.to_owned()), content);
        self.post_message(token, &request).await
    }

    /// `chat.postMessage` in the thread of the message at `posted`.
    pub async fn reply(
        &self,
        token: &SecretString,
        posted: &Posted,
        content: SlackMessageContent,
    ) -> Result<Posted, SlackError> {
        let request =
            SlackApiChatPostMessageRequest::new(SlackChannelId(posted.channel.clone()), content)
                .with_thread_ts(SlackTs(posted.ts.clone()));
        self.post_message(token, &request).await
    }

    async fn post_message(
        &self,
        token: &SecretString,
        request: &SlackApiChatPostMessageRequest,
    ) -> Result<Posted, SlackError> {
        let token = api_token(token);
        let posted = self
            .client
            .open_session(&token)
            .chat_post_message(request)
            .await
            .map_err(|e| failed("chat.postMessage", e))?;
        Ok(Posted {
            channel: posted.channel.0,
            ts: posted.ts.0,
        })
    }

    /// `chat.update`: replaces the message at `posted` with `content`.
    pub async fn update(
        &self,
        token: &SecretString,
        posted: &Posted,
        content: SlackMessageContent,
    ) -> Result<(), SlackError> {
        let token = api_token(token);
        let request = SlackApiChatUpdateRequest::new(
            SlackChannelId(posted.channel.clone()),
            content,
            SlackTs(posted.ts.clone()),
        );
        self.client
            .open_session(&token)
            .chat_update(&request)
            .await
            .map(drop)
            .map_err(|e| failed("chat.update", e))
    }

    /// Answers an interaction with a message only its user sees, through the `response_url`
    /// that came with it (in a request whose signature was checked).
    pub async fn respond(&self, response_url: &str, text: &str) -> Result<(), SlackError> {
        let url = reqwest::Url::parse(response_url).map_err(|e| SlackError {
            call: "response_url",
            message: format!("not a URL: {e}"),
        })?;
        let request = SlackApiPostWebhookMessageRequest::new(
            SlackMessageContent::new().with_text(text.to_owned()),
        )
        .with_replace_original(false);
        // `response_type` is not in slack-morphism's model; without it Slack's default for
        // response URLs applies, which is `ephemeral`.
        self.client
            .post_webhook_message(&url, &request)
            .await
            .map(drop)
            .map_err(|e| failed("response_url", e))
    }
}

fn api_token(token: &SecretString) -> SlackApiToken {
    SlackApiToken::new(SlackApiTokenValue(token.expose_secret().to_owned()))
}

fn failed(call: &'static str, err: slack_morphism::errors::SlackClientError) -> SlackError {
    // Slack's error bodies are one line of JSON (`{"ok":false,"error":"channel_not_found"}`);
    // keep the message on one line for the logs.
    SlackError {
        call,
        message: err.to_string().replace('\n', " "),
    }
}
