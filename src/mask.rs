//! Masks configured secret values in text before it is logged or stored as job output.

use std::borrow::Cow;

#[derive(Debug, Clone, Default)]
pub struct Masker {
    secrets: Vec<String>,
}

pub const MASK: &str = "****";

impl Masker {
    /// Secrets shorter than 4 characters are not masked: they would mask ordinary text.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= 4)
            .map(str::to_owned)
            .collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let m = Masker::new(["hunter22", "hunter22-extended", "ab"]);
        assert_eq!(
            m.mask("x hunter22-extended y hunter22 ab"),
            "x **** y **** ab"
        );
        assert!(matches!(m.mask("nothing here"), Cow::Borrowed(_)));
    }
}
