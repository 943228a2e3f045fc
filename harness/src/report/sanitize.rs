//! Makes container output safe to put in a report. Container logs carry colour codes, cursor
//! movement, terminal titles, progress bars drawn with `\r`, and sometimes NUL or other binary
//! bytes; JUnit consumers reject XML 1.0 documents containing such characters, and a terminal or
//! markdown viewer would render them as garbage. This strips ANSI/VT escape sequences and control
//! characters (keeping `\n` and `\t`) and drops every character XML 1.0 does not allow.
//!
//! XML markup characters (`<`, `&`, `]]>`) are left alone: quick-junit escapes them when it
//! writes text and attributes (the JUnit tests verify it), and the markdown writer escapes what it
//! needs.

use std::borrow::Cow;

const ESC: char = '\x1b';
const BEL: char = '\x07';
/// C1 "string terminator" (8-bit form of `ESC \`).
const ST: char = '\u{9c}';

/// Strips escape sequences and control characters from `input`, keeping `\n` and `\t`.
///
/// - CSI (`ESC [ ... final`, or the 8-bit `U+009B`), OSC (`ESC ] ... BEL|ST`), DCS/SOS/PM/APC
///   strings (`ESC P|X|^|_ ... ST`), `nF` escapes (`ESC ( B`) and two-character escapes
///   (`ESC 7`, `ESC c`) are removed whole.
/// - A string sequence that is never terminated ends at the next newline, so one stray `ESC ]`
///   cannot swallow the rest of a log.
/// - `\r\n` becomes `\n`; a lone `\r` (progress bars redrawing a line) becomes `\n`.
/// - Other C0 and C1 controls, DEL, NUL and the non-characters `U+FFFE`/`U+FFFF` are dropped;
///   the result only contains characters XML 1.0 allows.
///
/// Returns the input unchanged (borrowed) when there is nothing to strip.
pub fn sanitize(input: &str) -> Cow<'_, str> {
    if input.chars().all(is_plain) {
        return Cow::Borrowed(input);
    }
    let mut out = String::with_capacity(input.len());
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' => out.push(c),
            // `\r\n` -> `\n`: the `\n` is pushed next round. A lone `\r` -> `\n`.
            '\r' if chars.peek() == Some(&'\n') => {}
            '\r' => out.push('\n'),
            ESC => match chars.peek().copied() {
                Some('[') => {
                    chars.next();
                    skip_csi(&mut chars);
                }
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    chars.next();
                    skip_string(&mut chars);
                }
                Some('\x20'..='\x2f') => {
                    // nF escape: intermediates, then one final byte.
                    while matches!(chars.peek(), Some('\x20'..='\x2f')) {
                        chars.next();
                    }
                    if matches!(chars.peek(), Some('\x30'..='\x7e')) {
                        chars.next();
                    }
                }
                Some('\x30'..='\x7e') => {
                    chars.next();
                }
                // A lone ESC (end of input, or followed by text it cannot introduce).
                _ => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            c if is_plain(c) => out.push(c),
            _ => {}
        }
    }
    Cow::Owned(out)
}

/// [`sanitize`] for raw bytes (invalid UTF-8 becomes `U+FFFD`).
pub fn sanitize_bytes(input: &[u8]) -> String {
    sanitize(&String::from_utf8_lossy(input)).into_owned()
}

/// A character that passes through unchanged: printable, `\n` or `\t`, and allowed by XML 1.0.
fn is_plain(c: char) -> bool {
    match c {
        '\n' | '\t' => true,
        '\0'..='\x1f' | '\x7f'..='\u{9f}' => false,
        '\u{fffe}' | '\u{ffff}' => false,
        _ => true,
    }
}

/// Skips the rest of a CSI sequence: parameter and intermediate bytes, then the final byte. Stops
/// without consuming at anything else (a newline, a control, non-ASCII), as terminals abort there.
fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(&c) = chars.peek() {
        match c {
            '\x20'..='\x3f' => {
                chars.next();
            }
            '\x40'..='\x7e' => {
                chars.next();
                return;
            }
            _ => return,
        }
    }
}

/// Skips an OSC/DCS/SOS/PM/APC string up to and including its terminator (BEL, `ESC \` or the
/// 8-bit ST), or up to (not including) the next newline when it is unterminated.
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(&c) = chars.peek() {
        match c {
            BEL | ST => {
                chars.next();
                return;
            }
            ESC => {
                chars.next();
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                return;
            }
            '\n' | '\r' => return,
            _ => {
                chars.next();
            }
        }
    }
}

/// Expands tabs to spaces (tab stops every 8 columns). quick-junit drops tabs from everything it
/// writes, so the JUnit writer expands them first to keep log columns aligned.
pub fn expand_tabs(input: &str) -> Cow<'_, str> {
    if !input.contains('\t') {
        return Cow::Borrowed(input);
    }
    let mut out = String::with_capacity(input.len() + 16);
    let mut col = 0usize;
    for c in input.chars() {
        match c {
            '\t' => {
                let n = 8 - col % 8;
                out.push_str(&" ".repeat(n));
                col += n;
            }
            '\n' => {
                out.push(c);
                col = 0;
            }
            _ => {
                out.push(c);
                col += 1;
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::plain("db is ready\n", "db is ready\n")]
    #[case::sgr_colour("\x1b[31mERROR\x1b[0m boom", "ERROR boom")]
    #[case::sgr_many_params("\x1b[1;38;5;196mred\x1b[m", "red")]
    #[case::private_mode("\x1b[?25lhidden cursor\x1b[?25h", "hidden cursor")]
    #[case::erase_line("50%\x1b[2K\x1b[1G100%", "50%100%")]
    #[case::osc_title_bel("\x1b]0;my title\x07after", "after")]
    #[case::osc_hyperlink_st("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link")]
    #[case::osc_unterminated_stops_at_newline("\x1b]0;oops\nnext line", "\nnext line")]
    #[case::dcs("\x1bPq#0;2;0;0;0\x1b\\ok", "ok")]
    #[case::charset_nf("\x1b(Bascii", "ascii")]
    #[case::two_char_escape("\x1b7saved\x1b8", "saved")]
    #[case::c1_csi("\u{9b}31mred", "red")]
    #[case::c1_osc("\u{9d}0;t\u{9c}x", "x")]
    #[case::lone_esc_at_end("text\x1b", "text")]
    #[case::nul_dropped("a\0b", "ab")]
    #[case::bell_and_backspace("a\x07b\x08c", "abc")]
    #[case::del_dropped("a\x7fb", "ab")]
    #[case::crlf("one\r\ntwo\r\n", "one\ntwo\n")]
    #[case::lone_cr_progress("10%\r20%\r", "10%\n20%\n")]
    #[case::tab_kept("a\tb", "a\tb")]
    #[case::xml_noncharacters("a\u{fffe}b\u{ffff}c", "abc")]
    #[case::markup_untouched("x ]]> <y> & z", "x ]]> <y> & z")]
    #[case::unicode_kept("héllo ✓ 日本", "héllo ✓ 日本")]
    #[case::csi_aborted_by_newline("\x1b[31\nrest", "\nrest")]
    fn strips(#[case] input: &str, #[case] expected: &str) {
        assert_eq!(sanitize(input), expected);
    }

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(sanitize("nothing to do\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn bytes_that_are_not_utf8_become_replacement_chars() {
        assert_eq!(sanitize_bytes(b"ok \xff\x1b[0m\x00end"), "ok \u{fffd}end");
    }

    #[test]
    fn output_is_always_xml_1_0_chars() {
        // Every code point from 0 to 0x2000 plus the edges of the BMP, in one string.
        let all: String = (0u32..0x2000)
            .chain(0xfff0..=0x10010)
            .filter_map(char::from_u32)
            .collect();
        let out = sanitize(&all);
        assert!(out.chars().all(|c| matches!(c,
            '\t' | '\n' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}')));
        assert!(!out.contains(['\x1b', '\r', '\0']));
    }

    #[rstest]
    #[case("no tabs", "no tabs")]
    #[case("a\tb", "a       b")]
    #[case("abcdefgh\tx", "abcdefgh        x")]
    #[case("k\tv\n\tw", "k       v\n        w")]
    fn tabs_expand_to_stops(#[case] input: &str, #[case] expected: &str) {
        assert_eq!(expand_tabs(input), expected);
    }
}
