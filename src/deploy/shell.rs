//! The one quoting function. Every value that reaches a POSIX shell, local or remote, passes
//! through [`quote`]: branch names such as `demo/$(id)` or `` demo/`id` `` are valid git refs and
//! arrive from the internet, so nothing is ever interpolated into a command line unquoted.

/// Quotes `value` as one POSIX `sh` word that expands to exactly `value`.
///
/// Single quotes make every byte literal except `'` itself, which is written as `'\''` (close the
/// quote, an escaped quote, reopen). This is total: it has no failure case and no character class
/// to get wrong, which is why it is preferred over "escape the dangerous characters" schemes.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for ch in value.chars() {
        if ch == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(ch);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;
    use std::process::Command;

    fn echo_through_sh(value: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", quote(value)))
            .output()
            .expect("sh runs");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    #[test]
    fn quoted_values_come_back_unchanged() {
        for value in [
            "",
            "plain",
            "demo/$(id)",
            "demo/`id`",
            "it's",
            "a'b''c",
            "say \"hi\"",
            "${IFS}x",
            "$((6+7))",
            "a;id|x&&y&",
            "line\nbreak",
            "tab\there",
            "back\\slash",
            "-n",
            "*",
            "~root",
        ] {
            assert_eq!(echo_through_sh(value), value, "value {value:?}");
        }
    }

    proptest::proptest! {
        // Any string without NUL (which no argv or environment can carry) comes back unchanged
        // through a real shell: quotes, `$(..)`, backticks, newlines, control characters, UTF-8.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        #[test]
        fn sh_prints_exactly_the_quoted_value(value in "[^\\x00]{0,64}") {
            proptest::prop_assert_eq!(echo_through_sh(&value), value);
        }
    }

    #[test]
    fn quote_shape() {
        assert_eq!(quote("a"), "'a'");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
