//! Error policy.
//!
//! - Where a caller branches on the cause, the error is a `thiserror` enum owned by the module that
//!   produces it (`config::ConfigError`, `deploy::target::TargetError`, `store::StoreError`).
//! - Inside job execution, failures are `anyhow::Error` with `.context(..)` naming the host and the
//!   step; the worker turns them into the job's `failed` state and its result, and logs them once.
//! - At the HTTP edge every failure becomes one [`crate::http::ApiError`], which answers with a
//!   one-line reason and never exposes internals (SQL, paths, secrets).
//!
//! A failure is logged once, where it is handled, not at every layer it passes through.

/// Formats an error with its whole `source()` chain on one line, for job results and logs.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_joins_sources_once() {
        let err = Outer(std::io::Error::other("inner"));
        assert_eq!(chain(&err), "outer: inner");
    }
}
