//! Text a workload chose (process and thread names, executable and cgroup paths, pod, container
//! and label names, alert summaries that quote them) made safe to show: every control character
//! (C0, DEL, C1; tab and newline too) is written as `\xHH`, so no byte of it reaches a terminal
//! as a command (clear the screen, move the cursor, set the title), breaks a table row, or
//! splits a metric's label key. JSON escapes its strings itself; every other human-facing
//! output goes through here.

use std::borrow::Cow;
use std::fmt::{self, Display, Write as _};

/// `text` with each control character written as `\xHH`; borrowed when there is none.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    write!(out, "{}", Printable(text)).expect("writing to a String cannot fail");
    Cow::Owned(out)
}

/// [`printable`] as a `Display`, for `format!` and `write!`.
#[derive(Clone, Copy, Debug)]
pub struct Printable<'a>(pub &'a str);

impl Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in self.0.split_inclusive(char::is_control) {
            let mut chars = part.chars();
            match chars.next_back() {
                // Control characters are all below U+00A0: two hex digits.
                Some(c) if c.is_control() => write!(f, "{}\\x{:02x}", chars.as_str(), c as u32)?,
                _ => f.write_str(part)?,
            }
        }
        Ok(())
    }
}

/// `n` and the noun that goes with it: `1 event`, `2 events`, `0 alerts`.
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_written_out() {
        assert!(matches!(printable("dig"), Cow::Borrowed("dig")));
        assert_eq!(
            printable("\x1b[2J\x1b[1;1Hforged"),
            "\\x1b[2J\\x1b[1;1Hforged"
        );
        assert_eq!(
            printable("a\tb\nc\x7fd\u{9b}e\x1f"),
            "a\\x09b\\x0ac\\x7fd\\x9be\\x1f"
        );
        assert_eq!(printable("ünïcode ✓"), "ünïcode ✓");
        assert_eq!(Printable("x\0").to_string(), "x\\x00");
        let all: String = (0u32..0x200).filter_map(char::from_u32).collect();
        assert!(!printable(&all).chars().any(char::is_control));
    }

    #[test]
    fn counted_takes_the_noun_that_goes_with_the_number() {
        assert_eq!(counted(1, "event", "events"), "1 event");
        assert_eq!(counted(0, "alert", "alerts"), "0 alerts");
        assert_eq!(counted(2, "query", "queries"), "2 queries");
    }
}
