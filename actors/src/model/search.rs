//! Full-text search text, parsed safely. User text never reaches FTS5's query syntax: it is
//! split into words (runs of letters and digits, as FTS5's `unicode61` tokenizer splits), and
//! each word becomes a quoted FTS5 string, so quotes, `NEAR`, `AND`/`OR`/`NOT`, `-`, `:`, `^`
//! and parentheses are only ever text. All words must match (in any order, in any searched
//! field). The one piece of syntax: a word directly followed by `*` matches as a prefix
//! (`mil*` finds "milk").
//!
//! The same words are matched in memory (live subscriptions with `$search`): case-folded and
//! with common Latin diacritics removed, as `unicode61 remove_diacritics 2` does.

use crate::error::{PlazaError, Result};

/// Longest search text accepted.
pub const MAX_SEARCH_CHARS: usize = 256;
/// Most words in one search.
pub const MAX_SEARCH_WORDS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// Folded (lower case, no diacritics).
    pub word: String,
    pub prefix: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchText {
    pub terms: Vec<Term>,
}

impl SearchText {
    /// `Ok(None)` when the text holds no word at all (blank, or punctuation only).
    pub fn parse_opt(text: &str) -> Result<Option<SearchText>> {
        if text.chars().count() > MAX_SEARCH_CHARS {
            return Err(PlazaError::Validation(format!("search text is limited to {MAX_SEARCH_CHARS} characters")));
        }
        let mut terms: Vec<Term> = Vec::new();
        let mut word = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_alphanumeric() {
                word.push(c);
                if chars.peek().is_some_and(|n| n.is_alphanumeric()) {
                    continue;
                }
                let prefix = chars.peek() == Some(&'*');
                let term = Term { word: fold(&std::mem::take(&mut word)), prefix };
                if !terms.contains(&term) {
                    terms.push(term);
                }
            }
        }
        if terms.len() > MAX_SEARCH_WORDS {
            return Err(PlazaError::Validation(format!("search text holds at most {MAX_SEARCH_WORDS} words")));
        }
        Ok(if terms.is_empty() { None } else { Some(SearchText { terms }) })
    }

    /// As [`parse_opt`](Self::parse_opt), refusing text without a word (400).
    pub fn parse(text: &str) -> Result<SearchText> {
        Self::parse_opt(text)?.ok_or_else(|| PlazaError::Validation("search text holds no word to search for".into()))
    }

    /// The FTS5 MATCH expression: every word a quoted string (an implicit AND).
    pub fn fts_query(&self) -> String {
        self.terms
            .iter()
            .map(|t| format!("\"{}\"{}", t.word.replace('"', "\"\""), if t.prefix { "*" } else { "" }))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether every word occurs in `texts` (in-memory evaluation).
    pub fn matches<'a>(&self, texts: impl Iterator<Item = &'a str>) -> bool {
        let mut tokens: Vec<String> = Vec::new();
        for t in texts {
            tokens.extend(t.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(fold));
        }
        self.terms.iter().all(|term| {
            tokens.iter().any(|tok| if term.prefix { tok.starts_with(&term.word) } else { *tok == term.word })
        })
    }
}

/// Lower case without diacritics, close to `unicode61 remove_diacritics 2`.
pub fn fold(word: &str) -> String {
    word.chars().flat_map(char::to_lowercase).map(base_letter).collect()
}

/// Latin letters with diacritics that decompose to a base letter.
fn base_letter(c: char) -> char {
    match c {
        'à'..='å' | 'ā' | 'ă' | 'ą' => 'a',
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => 'c',
        'ď' => 'd',
        'è'..='ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => 'e',
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => 'g',
        'ĥ' => 'h',
        'ì'..='ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' => 'i',
        'ĵ' => 'j',
        'ķ' => 'k',
        'ĺ' | 'ļ' | 'ľ' => 'l',
        'ñ' | 'ń' | 'ņ' | 'ň' => 'n',
        'ò'..='ö' | 'ō' | 'ŏ' | 'ő' => 'o',
        'ŕ' | 'ŗ' | 'ř' => 'r',
        'ś' | 'ŝ' | 'ş' | 'š' => 's',
        'ţ' | 'ť' => 't',
        'ù'..='ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => 'u',
        'ŵ' => 'w',
        'ý' | 'ÿ' | 'ŷ' => 'y',
        'ź' | 'ż' | 'ž' => 'z',
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_never_becomes_fts_syntax() {
        let q = |s: &str| SearchText::parse(s).map(|t| t.fts_query());
        assert_eq!(q("buy milk").unwrap(), r#""buy" "milk""#);
        assert_eq!(q("Crème  BRÛLÉE").unwrap(), r#""creme" "brulee""#);
        assert_eq!(q("mil*").unwrap(), r#""mil"*"#);
        assert_eq!(q("NEAR(a b) AND OR -x \"y\" title:z ^w").unwrap(), r#""near" "a" "b" "and" "or" "x" "y" "title" "z" "w""#);
        for hostile in ["\"", "*", "-", "()", "  ", ""] {
            assert!(SearchText::parse(hostile).is_err(), "{hostile}");
            assert_eq!(SearchText::parse_opt(hostile).unwrap(), None);
        }
        assert!(SearchText::parse(&"a ".repeat(100)).is_ok(), "repeated words count once");
        assert!(SearchText::parse(&"w".repeat(300)).is_err());
        assert!(SearchText::parse(&(0..20).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ")).is_err());
    }

    #[test]
    fn matches_in_memory_like_the_tokenizer() {
        let t = SearchText::parse("creme mil*").unwrap();
        assert!(t.matches(["Crème fraîche", "and MILK"].into_iter()));
        assert!(!t.matches(["Crème fraîche", "smile"].into_iter()));
        assert!(!SearchText::parse("milk").unwrap().matches(["milky way"].into_iter()));
    }
}
