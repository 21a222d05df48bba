//! Cleaning and tokenizing one document.
//!
//! [`reference_tokens`] reproduces the reference `clean_str` exactly (see
//! `docs/method.md` §1): every character outside
//! ``[A-Za-z0-9(),!?'`]`` becomes a space; the clitics `'s 've n't 're 'd 'll`
//! are split off (case-sensitive, before lower-casing); `, ! ( ) ?` are
//! padded with spaces and `( ) ?` are written `\( \) \?`; whitespace runs
//! collapse; the result is lower-cased and split on spaces.
//! [`textsgc_clean`] is TextSGC's variant, which deletes what the reference
//! turns into spaces.

/// Tokenizes `text` with the reference rules. Tokens are slices of `buf`,
/// which is reused between calls.
pub fn reference_tokens<'a>(text: &str, lowercase: bool, buf: &'a mut Vec<u8>) -> impl Iterator<Item = &'a str> + 'a {
    buf.clear();
    clean_into(text.as_bytes(), lowercase, buf);
    // Only ASCII is ever written, so this is valid UTF-8.
    let s: &'a str = std::str::from_utf8(buf).expect("cleaned text is ASCII");
    s.split(' ')
}

/// The reference cleaning of `text` as one string: its tokens joined by
/// single spaces (what the reference's `' '.join(words)` gives).
pub fn reference_clean(text: &str, lowercase: bool) -> String {
    let mut out = Vec::with_capacity(text.len());
    clean_into(text.as_bytes(), lowercase, &mut out);
    String::from_utf8(out).expect("cleaned text is ASCII")
}

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'(' | b')' | b',' | b'!' | b'?' | b'\'' | b'`')
}

/// One left-to-right pass over the bytes doing steps 2-6 at once, writing
/// tokens separated by single spaces into `out` (no leading or trailing
/// space). A byte outside the allowed set (every byte of a non-ASCII
/// character included) acts as a space, which is what the reference's
/// per-character replacement gives once spaces are collapsed. The clitic
/// patterns cannot overlap or create one another, so one pass equals the
/// sequential regex replacements; they are matched before lower-casing.
fn clean_into(t: &[u8], lowercase: bool, out: &mut Vec<u8>) {
    clean_with::<true>(t, lowercase, out)
}

/// [`clean_into`], with its fast path for runs of letters and digits
/// when `RUNS` (without, for the test that compares both).
fn clean_with<const RUNS: bool>(t: &[u8], lowercase: bool, out: &mut Vec<u8>) {
    let mut space = false;
    let emit = |out: &mut Vec<u8>, bytes: &[u8], space_before: bool, space_after: bool, space: &mut bool| {
        if (space_before || *space) && !out.is_empty() {
            out.push(b' ');
        }
        for &b in bytes {
            out.push(if lowercase { b.to_ascii_lowercase() } else { b });
        }
        *space = space_after;
    };
    let at = |i: usize| -> u8 { t.get(i).copied().filter(|&b| allowed(b)).unwrap_or(b' ') };
    let mut i = 0;
    while i < t.len() {
        // Most bytes are letters and digits, copied as they are (lower-
        // cased): a run of them at once. A run ends before the `n` of a
        // following `n't`, which the match below splits off.
        let run = if RUNS { t[i..].iter().position(|b| !b.is_ascii_alphanumeric()).map_or(t.len(), |n| i + n) } else { i };
        let run = if run > i && t[run - 1] == b'n' && at(run) == b'\'' && at(run + 1) == b't' { run - 1 } else { run };
        if run > i {
            if space && !out.is_empty() {
                out.push(b' ');
            }
            space = false;
            if lowercase {
                out.extend(t[i..run].iter().map(u8::to_ascii_lowercase));
            } else {
                out.extend_from_slice(&t[i..run]);
            }
            i = run;
            continue;
        }
        let b = at(i);
        match b {
            b' ' => space = true,
            b'\'' => {
                let (n1, n2) = (at(i + 1), at(i + 2));
                let clitic = n1 == b's' || n1 == b'd' || (n1 == b'v' && n2 == b'e') || (n1 == b'r' && n2 == b'e') || (n1 == b'l' && n2 == b'l');
                emit(out, b"'", clitic, false, &mut space);
            }
            b'n' if at(i + 1) == b'\'' && at(i + 2) == b't' => {
                emit(out, b"n't", true, false, &mut space);
                i += 3;
                continue;
            }
            b',' => emit(out, b",", true, true, &mut space),
            b'!' => emit(out, b"!", true, true, &mut space),
            b'(' => emit(out, b"\\(", true, true, &mut space),
            b')' => emit(out, b"\\)", true, true, &mut space),
            b'?' => emit(out, b"\\?", true, true, &mut space),
            _ => emit(out, &[b], false, false, &mut space),
        }
        i += 1;
    }
}

/// TextSGC's cleaning (its `utils.clean_str`, which TextSGC and TextS²GC
/// report their text results on): every character that is not an ASCII
/// letter, digit or space is *deleted* (`don't` is `dont`, `e-mail` is
/// `email`, a tab joins its neighbours), spaces collapse, the result is
/// lower-cased and split on spaces. (Its clitic and padding substitutions
/// come after the deletion and never match.) Returned as one string, its
/// tokens joined by single spaces.
pub fn textsgc_clean(text: &str, lowercase: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c == ' ' {
            space = true;
        } else if c.is_ascii_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(if lowercase { c.to_ascii_lowercase() } else { c });
        }
    }
    out
}

/// A plain Unicode-aware tokenizer: maximal runs of alphanumeric characters
/// (letters of any script, digits) and apostrophes inside words.
pub fn unicode_tokens(text: &str, lowercase: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let inner_apostrophe = c == '\'' && !cur.is_empty() && chars.peek().is_some_and(|n| n.is_alphanumeric());
        if c.is_alphanumeric() || inner_apostrophe {
            if lowercase {
                cur.extend(c.to_lowercase());
            } else {
                cur.push(c);
            }
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// NLTK's 179 English stop words (`data/stopwords/nltk_english.txt`).
pub fn nltk_english() -> Vec<&'static str> {
    include_str!("stopwords_nltk_english.txt").lines().filter(|l| !l.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        let mut b = Vec::new();
        reference_tokens(s, true, &mut b).filter(|t| !t.is_empty()).map(str::to_owned).collect()
    }

    /// [`clean_into`] without its fast path, byte at a time.
    fn clean_bytewise(t: &[u8], lowercase: bool) -> Vec<u8> {
        let mut out = Vec::new();
        clean_with::<false>(t, lowercase, &mut out);
        out
    }

    /// Random texts over an alphabet dense in what the rules look at
    /// (clitics, `n't`, padding, capitals, non-ASCII): the fast path gives
    /// the byte-at-a-time result.
    #[test]
    fn runs_of_letters_and_digits_clean_as_byte_at_a_time() {
        use rand::{Rng, SeedableRng};
        let pieces = ["n't", "N'T", "'s", "'ve", "'re", "'d", "'ll", "n", "N", "'", "t", "s", "don", "Can", "x9", " ", "  ", "\t", ",", "!", "(", ")", "?", "`", "-", "é", "ß", "A", "z", "0", "ve", "ll", "re"];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for _ in 0..20_000 {
            let text: String = (0..rng.random_range(0..14)).map(|_| pieces[rng.random_range(0..pieces.len())]).collect();
            for lowercase in [true, false] {
                let mut out = Vec::new();
                clean_into(text.as_bytes(), lowercase, &mut out);
                assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&clean_bytewise(text.as_bytes(), lowercase)), "{text:?} (lowercase {lowercase})");
            }
        }
    }

    #[test]
    fn reference_rules() {
        assert_eq!(toks("It's (really) good, isn't it?!"), ["it", "'s", "\\(", "really", "\\)", "good", ",", "is", "n't", "it", "\\?", "!"]);
        assert_eq!(toks("we've they're I'd you'll"), ["we", "'ve", "they", "'re", "i", "'d", "you", "'ll"]);
        // Case-sensitive clitics: IT'S stays one token, as in the reference.
        assert_eq!(toks("IT'S DON'T"), ["it's", "don't"]);
        assert_eq!(toks("caf\u{e9}\tna\u{ef}ve\r\n"), ["caf", "na", "ve"]);
        assert_eq!(toks("a`b  c--d"), ["a`b", "c", "d"]);
        assert!(toks("  \r ").is_empty());
    }

    #[test]
    fn unicode_rules() {
        assert_eq!(unicode_tokens("Café, naïve! don't 42x", true), ["café", "naïve", "don't", "42x"]);
    }

    /// TextSGC's `clean_str` on these strings (Python 3.11, its regexes):
    /// `"its really good isnt it"`, `"dont emailme caf 42x"`,
    /// `"ab c"` (a tab deleted), `""`.
    #[test]
    fn textsgc_rules_delete_what_is_not_a_letter_digit_or_space() {
        assert_eq!(textsgc_clean("It's (really) good,  isn't it?!", true), "its really good isnt it");
        assert_eq!(textsgc_clean(" Don't e-mail.me Café 42x ", true), "dont emailme caf 42x");
        assert_eq!(textsgc_clean("a\tb   c", true), "ab c");
        assert_eq!(textsgc_clean("?! -- ", true), "");
        assert_eq!(textsgc_clean("Mixed CASE", false), "Mixed CASE");
    }

    #[test]
    fn stopwords_count() {
        assert_eq!(nltk_english().len(), 179);
    }
}
