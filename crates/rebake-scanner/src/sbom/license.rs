//! Declared licenses to SPDX license expressions.
//!
//! Packages declare licenses loosely: Debian's DEP-5 short names (`GPL-2+`, `Expat`,
//! `BSD-3-clause`, `public-domain`, `GPL-2+ or Artistic`), apk's `L:` (mostly SPDX already).
//! [`spdx_license`] maps what it can to SPDX list ids (case-insensitively, DEP-5 GNU names
//! to `-only`/`-or-later`) and turns every other name into a `LicenseRef-…`.

use super::spdx_ids::SPDX_IDS;

/// A declared license as an SPDX license expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpdxLicense {
    /// A valid SPDX expression (`MIT`, `GPL-2.0-or-later OR Artistic-1.0-Perl`,
    /// `LicenseRef-public-domain`).
    pub expression: String,
    /// The `LicenseRef-…` ids the expression uses, each with the declared name it stands
    /// for; an SPDX document needs an extracted-licensing entry for each.
    pub refs: Vec<(String, String)>,
    /// Whether the expression is a single SPDX list id (CycloneDX `license.id`).
    pub single_id: bool,
}

/// The SPDX expression for a declared license (`declared` is one `License:`/`L:` value).
pub fn spdx_license(declared: &str) -> SpdxLicense {
    let declared = declared.trim();
    let tokens = tokenize(declared);
    let mut parser = Parser {
        tokens: &tokens,
        at: 0,
        refs: Vec::new(),
    };
    match parser.expression() {
        Some(expression) if parser.at == tokens.len() => SpdxLicense {
            single_id: parser.refs.is_empty() && !expression.contains([' ', '(']),
            expression,
            refs: parser.refs,
        },
        _ => {
            let id = license_ref(declared);
            SpdxLicense {
                expression: id.clone(),
                refs: vec![(id, declared.to_string())],
                single_id: false,
            }
        }
    }
}

/// `LicenseRef-<name>` with every run of characters outside `[A-Za-z0-9.]` replaced by one `-`.
pub(crate) fn license_ref(name: &str) -> String {
    let mut idstring = String::with_capacity(name.len());
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() || ch == '.' {
            idstring.push(ch);
        } else if !idstring.ends_with('-') {
            idstring.push('-');
        }
    }
    let idstring = idstring.trim_matches('-');
    format!("LicenseRef-{}", if idstring.is_empty() { "unknown" } else { idstring })
}

/// Words and parentheses.
fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    for ch in text.chars() {
        if ch.is_whitespace() || ch == '(' || ch == ')' {
            if !word.is_empty() {
                tokens.push(std::mem::take(&mut word));
            }
            if ch == '(' || ch == ')' {
                tokens.push(ch.to_string());
            }
        } else {
            word.push(ch);
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    tokens
}

fn is_operator(token: &str) -> bool {
    ["and", "or", "with"].iter().any(|op| token.eq_ignore_ascii_case(op))
}

/// `expression := term ((AND|OR) term)*`, `term := '(' expression ')' | id [WITH exception]`.
struct Parser<'a> {
    tokens: &'a [String],
    at: usize,
    refs: Vec<(String, String)>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    fn expression(&mut self) -> Option<String> {
        let mut out = self.term()?;
        while let Some(op) = self.peek() {
            let op = if op.eq_ignore_ascii_case("and") {
                "AND"
            } else if op.eq_ignore_ascii_case("or") {
                "OR"
            } else {
                break;
            };
            self.at += 1;
            let right = self.term()?;
            out = format!("{out} {op} {right}");
        }
        Some(out)
    }

    fn term(&mut self) -> Option<String> {
        let token = self.peek()?.to_string();
        self.at += 1;
        if token == "(" {
            let inner = self.expression()?;
            if self.peek() != Some(")") {
                return None;
            }
            self.at += 1;
            return Some(format!("({inner})"));
        }
        if token == ")" || is_operator(&token) {
            return None;
        }
        let license = match known_id(&token) {
            Some(id) => id,
            None => {
                let id = license_ref(&token);
                if !self.refs.iter().any(|(known, _)| *known == id) {
                    self.refs.push((id.clone(), token.clone()));
                }
                id
            }
        };
        if self.peek().is_some_and(|next| next.eq_ignore_ascii_case("with")) {
            self.at += 1;
            let exception = self.peek()?.to_string();
            self.at += 1;
            // DEP-5 writes `with <Name> exception`: the trailing word is part of the name.
            let dep5 = self.peek().is_some_and(|next| next.eq_ignore_ascii_case("exception"));
            if dep5 {
                self.at += 1;
            }
            let exception =
                exception_id(&exception).or_else(|| dep5.then(|| dep5_exception(&license, &exception)).flatten())?;
            if license.starts_with("LicenseRef-") {
                return None;
            }
            return Some(format!("{license} WITH {exception}"));
        }
        Some(license)
    }
}

/// The SPDX list spelling of `name`, case-insensitively.
fn listed(name: &str) -> Option<&'static str> {
    SPDX_IDS.iter().copied().find(|id| id.eq_ignore_ascii_case(name))
}

/// An SPDX exception id.
fn exception_id(name: &str) -> Option<&'static str> {
    listed(name).filter(|id| id.to_ascii_lowercase().contains("exception") && !id.contains("-with-"))
}

/// The SPDX exception for DEP-5's `with <name> exception`: `<name>-exception`, or the
/// one numbered like the GPL it modifies (`GPL-2.0-or-later` + `Autoconf` →
/// `Autoconf-exception-2.0`).
fn dep5_exception(license: &str, name: &str) -> Option<&'static str> {
    let version = ["2.0", "3.0"]
        .into_iter()
        .find(|v| license.contains(&format!("GPL-{v}")));
    exception_id(&format!("{name}-exception"))
        .or_else(|| version.and_then(|v| exception_id(&format!("{name}-exception-{v}"))))
}

/// The SPDX list id for a declared name: listed ids as they are, DEP-5 GNU short names
/// (`GPL-2`, `LGPL-2.1+`) as `-only`/`-or-later`, a few common DEP-5 aliases.
fn known_id(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let alias = match lower.as_str() {
        "expat" => Some("MIT"),
        "artistic" | "artistic-1" => Some("Artistic-1.0-Perl"),
        "artistic-2" => Some("Artistic-2.0"),
        "psf-2" => Some("PSF-2.0"),
        "python" => Some("Python-2.0"),
        "apache-2" => Some("Apache-2.0"),
        "mpl-2" => Some("MPL-2.0"),
        _ => None,
    };
    if let Some(alias) = alias {
        return Some(alias.to_string());
    }
    let (base, or_later) = match name.strip_suffix('+') {
        Some(base) => (base, true),
        None => (name, false),
    };
    let family = ["GPL-", "LGPL-", "AGPL-", "GFDL-"]
        .iter()
        .find(|family| base.len() > family.len() && base[..family.len()].eq_ignore_ascii_case(family));
    if let Some(family) = family {
        let number = &base[family.len()..];
        if !number.is_empty() && number.chars().all(|ch| ch.is_ascii_digit() || ch == '.') {
            let number = if number.contains('.') {
                number.to_string()
            } else {
                format!("{number}.0")
            };
            let suffix = if or_later { "or-later" } else { "only" };
            if let Some(id) = listed(&format!("{family}{number}-{suffix}")) {
                return Some(id.to_string());
            }
        }
    }
    if let Some(id) = listed(name) {
        return Some(id.to_string());
    }
    if or_later {
        return listed(base).map(|id| format!("{id}+"));
    }
    None
}

/// The SPDX expression for all of a package's declared licenses (joined with `AND`),
/// with the `LicenseRef-…`s it uses; `None` when there are none.
pub(crate) fn combined(licenses: &[String]) -> Option<SpdxLicense> {
    let mut parts: Vec<SpdxLicense> = licenses.iter().map(|license| spdx_license(license)).collect();
    parts.dedup_by(|a, b| a.expression == b.expression);
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => {
            let expression = parts
                .iter()
                .map(|part| {
                    if part.expression.contains(' ') {
                        format!("({})", part.expression)
                    } else {
                        part.expression.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" AND ");
            let mut refs: Vec<(String, String)> = Vec::new();
            for (id, name) in parts.into_iter().flat_map(|part| part.refs) {
                if !refs.iter().any(|(known, _)| *known == id) {
                    refs.push((id, name));
                }
            }
            Some(SpdxLicense {
                expression,
                refs,
                single_id: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(text: &str) -> String {
        spdx_license(text).expression
    }

    #[test]
    fn maps_dep5_names() {
        assert_eq!(expr("GPL-2+"), "GPL-2.0-or-later");
        assert_eq!(expr("GPL-2"), "GPL-2.0-only");
        assert_eq!(expr("LGPL-2.1+"), "LGPL-2.1-or-later");
        assert_eq!(expr("BSD-3-clause"), "BSD-3-Clause");
        assert_eq!(expr("Expat"), "MIT");
        assert_eq!(expr("zlib"), "Zlib");
        assert_eq!(expr("GPL-2+ or Artistic"), "GPL-2.0-or-later OR Artistic-1.0-Perl");
        assert_eq!(
            expr("MIT AND (Apache-2.0 OR BSD-2-Clause)"),
            "MIT AND (Apache-2.0 OR BSD-2-Clause)"
        );
        assert_eq!(
            expr("GPL-2.0-or-later WITH Classpath-exception-2.0"),
            "GPL-2.0-or-later WITH Classpath-exception-2.0"
        );
        assert!(spdx_license("MIT").single_id);
        assert!(!spdx_license("MIT OR Apache-2.0").single_id);
    }

    #[test]
    fn unknown_names_become_license_refs() {
        let license = spdx_license("public-domain");
        assert_eq!(license.expression, "LicenseRef-public-domain");
        assert_eq!(
            license.refs,
            [("LicenseRef-public-domain".to_string(), "public-domain".to_string())]
        );
        assert!(!license.single_id);
        assert_eq!(expr("GPL-2+ or custom"), "GPL-2.0-or-later OR LicenseRef-custom");
        assert_eq!(
            expr("GPL-2+ with OpenSSL exception"),
            "LicenseRef-GPL-2-with-OpenSSL-exception"
        );
        assert_eq!(
            expr("GPL-2+ with Autoconf exception"),
            "GPL-2.0-or-later WITH Autoconf-exception-2.0"
        );
        assert_eq!(expr("MIT AND"), "LicenseRef-MIT-AND");
        assert_eq!(expr("(MIT"), "LicenseRef-MIT");
    }

    #[test]
    fn combines() {
        let all = combined(&[
            "GPL-2+ or MIT".to_string(),
            "Zlib".to_string(),
            "public-domain".to_string(),
        ]);
        let all = all.map(|license| license.expression);
        assert_eq!(
            all.as_deref(),
            Some("(GPL-2.0-or-later OR MIT) AND Zlib AND LicenseRef-public-domain")
        );
        assert!(combined(&[]).is_none());
    }
}
