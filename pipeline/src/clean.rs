//! Cleaning and tokenizing one document.
//!
//! [`reference_tokens`] reproduces the reference `clean_str` exactly (see
//! `textgcn-reference.md` §1): every character outside
//! ``[A-Za-z0-9(),!?'`]`` becomes a space; the clitics `'s 've n't 're 'd 'll`
//! are split off (case-sensitive, before lower-casing); `, ! ( ) ?` are
//! padded with spaces and `( ) ?` are written `\( \) \?`; whitespace runs
//! collapse; the result is lower-cased and split on spaces.

/// Tokenizes `text` with the reference rules, appending tokens to `out`
/// (tokens are slices of `buf`, which is reused between calls).
pub fn reference_tokens<'a>(text: &str, lowercase: bool, buf: &'a mut Vec<u8>) -> impl Iterator<Item = &'a str> + 'a {
    buf.clear();
    // Step 2: keep only the allowed ASCII characters; anything else (a
    // non-ASCII character counts once, as in the reference's str) is a space.
    let mut mapped: Vec<u8> = Vec::with_capacity(text.len());
    for ch in text.chars() {
        let b = if ch.is_ascii() { ch as u8 } else { b' ' };
        mapped.push(if b.is_ascii_alphanumeric() || matches!(b, b'(' | b')' | b',' | b'!' | b'?' | b'\'' | b'`') { b } else { b' ' });
    }
    // Steps 3-4 in one left-to-right pass. The clitic patterns cannot
    // overlap or create one another, so one pass equals the sequential
    // regex replacements.
    let n = mapped.len();
    let mut i = 0;
    while i < n {
        let b = mapped[i];
        let rest = &mapped[i..];
        if b == b'\'' && (rest.starts_with(b"'s") || rest.starts_with(b"'ve") || rest.starts_with(b"'re") || rest.starts_with(b"'d") || rest.starts_with(b"'ll")) {
            buf.push(b' ');
            buf.push(b'\'');
        } else if b == b'n' && rest.starts_with(b"n't") {
            buf.extend_from_slice(b" n't");
            i += 3;
            continue;
        } else {
            match b {
                b',' => buf.extend_from_slice(b" , "),
                b'!' => buf.extend_from_slice(b" ! "),
                b'(' => buf.extend_from_slice(b" \\( "),
                b')' => buf.extend_from_slice(b" \\) "),
                b'?' => buf.extend_from_slice(b" \\? "),
                _ => buf.push(b),
            }
        }
        i += 1;
    }
    if lowercase {
        buf.make_ascii_lowercase();
    }
    // Only ASCII remains, so this is valid UTF-8.
    let s: &'a str = std::str::from_utf8(buf).expect("cleaned text is ASCII");
    s.split(' ').filter(|t| !t.is_empty())
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
        reference_tokens(s, true, &mut b).map(str::to_owned).collect()
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

    #[test]
    fn stopwords_count() {
        assert_eq!(nltk_english().len(), 179);
    }
}
