//! Globs over server names, tool names, prompt names and resource URIs.
//!
//! `*` matches any run of characters (also none, also `/`), `?` exactly one
//! character, anything else itself. There is no escape and no character
//! class: a glob is not a regular expression. Matching is case-sensitive and
//! works on Unicode scalar values, so `?` matches `é` as one character.

/// A compiled glob: the common shapes get a direct string test, the rest a
/// backtracking matcher that is linear in practice (quadratic at worst, in the
/// length of a name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Glob {
    /// No wildcard: string equality.
    Exact(String),
    /// Only `*`s: everything.
    Any,
    /// `literal*`.
    Prefix(String),
    /// `*literal`.
    Suffix(String),
    /// Anything else.
    Pattern(Vec<Token>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Token {
    Char(char),
    One,
    Star,
}

/// Whether `name` matches the glob `pattern` (compiled on each call: for
/// patterns held elsewhere, such as grants).
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    Glob::new(pattern).matches(name)
}

impl Glob {
    pub(super) fn new(pattern: &str) -> Glob {
        if !pattern.contains(['*', '?']) {
            return Glob::Exact(pattern.to_string());
        }
        if pattern.chars().all(|c| c == '*') {
            return Glob::Any;
        }
        if !pattern.contains('?') {
            let stars = pattern.matches('*').count();
            if stars == 1 {
                if let Some(prefix) = pattern.strip_suffix('*') {
                    return Glob::Prefix(prefix.to_string());
                }
                if let Some(suffix) = pattern.strip_prefix('*') {
                    return Glob::Suffix(suffix.to_string());
                }
            }
        }
        let mut tokens: Vec<Token> = Vec::with_capacity(pattern.len());
        for c in pattern.chars() {
            let token = match c {
                '*' => Token::Star,
                '?' => Token::One,
                c => Token::Char(c),
            };
            // `**` is `*`.
            if token == Token::Star && tokens.last() == Some(&Token::Star) {
                continue;
            }
            tokens.push(token);
        }
        Glob::Pattern(tokens)
    }

    /// The name this glob matches when it matches exactly one.
    pub(super) fn literal(&self) -> Option<&str> {
        match self {
            Glob::Exact(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn matches(&self, name: &str) -> bool {
        match self {
            Glob::Exact(s) => name == s,
            Glob::Any => true,
            Glob::Prefix(p) => name.starts_with(p.as_str()),
            Glob::Suffix(s) => name.ends_with(s.as_str()),
            Glob::Pattern(tokens) => wildcard(tokens, name),
        }
    }
}

/// The classic two-pointer wildcard match: on a mismatch, go back to the
/// last `*` and let it swallow one more character.
fn wildcard(tokens: &[Token], name: &str) -> bool {
    let (mut t, mut n) = (0usize, 0usize);
    // The token after the last `*`, and where in `name` that `*` stopped.
    let mut backtrack: Option<(usize, usize)> = None;
    while n < name.len() {
        let Some(c) = name[n..].chars().next() else {
            break;
        };
        match tokens.get(t) {
            Some(Token::Star) => {
                t += 1;
                backtrack = Some((t, n));
                continue;
            }
            Some(Token::One) => {
                t += 1;
                n += c.len_utf8();
                continue;
            }
            Some(Token::Char(expected)) if *expected == c => {
                t += 1;
                n += c.len_utf8();
                continue;
            }
            _ => {}
        }
        let Some((after_star, from)) = backtrack else {
            return false;
        };
        let Some(swallowed) = name[from..].chars().next() else {
            return false;
        };
        let from = from + swallowed.len_utf8();
        backtrack = Some((after_star, from));
        t = after_star;
        n = from;
    }
    tokens[t..].iter().all(|token| *token == Token::Star)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The definition, recursively: the reference the compiled forms are
    /// checked against.
    fn reference(pattern: &[char], name: &[char]) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some(('*', rest)) => (0..=name.len()).any(|skip| reference(rest, &name[skip..])),
            Some(('?', rest)) => !name.is_empty() && reference(rest, &name[1..]),
            Some((c, rest)) => name.first() == Some(c) && reference(rest, &name[1..]),
        }
    }

    fn check(pattern: &str, name: &str) -> bool {
        let compiled = Glob::new(pattern).matches(name);
        let p: Vec<char> = pattern.chars().collect();
        let n: Vec<char> = name.chars().collect();
        assert_eq!(compiled, reference(&p, &n), "pattern {pattern:?} name {name:?}");
        compiled
    }

    #[test]
    fn shapes() {
        assert_eq!(Glob::new("fs"), Glob::Exact("fs".into()));
        assert_eq!(Glob::new("*"), Glob::Any);
        assert_eq!(Glob::new("**"), Glob::Any);
        assert_eq!(Glob::new("fs-*"), Glob::Prefix("fs-".into()));
        assert_eq!(Glob::new("*_file"), Glob::Suffix("_file".into()));
        assert!(matches!(Glob::new("a*b"), Glob::Pattern(_)));
        assert!(matches!(Glob::new("a?"), Glob::Pattern(_)));
        assert_eq!(Glob::new("fs").literal(), Some("fs"));
        assert_eq!(Glob::new("fs*").literal(), None);
    }

    #[test]
    fn matching() {
        assert!(check("fs", "fs"));
        assert!(!check("fs", "fs2"));
        assert!(!check("fs", "FS"), "case-sensitive");
        assert!(check("*", ""));
        assert!(check("*", "anything/at all"));
        assert!(check("fs-*", "fs-"));
        assert!(check("fs-*", "fs-prod"));
        assert!(!check("fs-*", "f-prod"));
        assert!(check("*_file", "write_file"));
        assert!(!check("*_file", "write_files"));
        assert!(check("read_?", "read_x"));
        assert!(!check("read_?", "read_"));
        assert!(!check("read_?", "read_xy"));
        assert!(check("?é", "xé"), "? is one character, not one byte");
        assert!(check("*a*b*", "xxaxxbxx"));
        assert!(!check("*a*b*", "xxbxxaxx"));
        assert!(check("file:///home/*/notes/*", "file:///home/ann/notes/a.md"));
        assert!(!check("file:///home/*/notes/*", "file:///etc/passwd"));
        assert!(check("a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaab"));
        assert!(!check("a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaa"));
        assert!(check("[x]", "[x]"), "no character classes");
        assert!(!check("[x]", "x"));
        assert!(check("a.b", "a.b"), "no regular expressions");
        assert!(!check("a.b", "axb"));
    }

    proptest! {
        #[test]
        fn compiled_globs_agree_with_the_definition(
            pattern in "[ab*?é/]{0,8}",
            name in "[abé/]{0,10}",
        ) {
            check(&pattern, &name);
        }
    }
}
