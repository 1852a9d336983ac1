//! The scanner's decision about one image: allowed, or denied by named rules (the rules
//! themselves are Rego, see [`crate::rego`]).

/// A policy decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every rule allowed it.
    Allow,
    /// A rule denied it.
    Deny {
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// A denial by `rule`.
    pub fn deny(rule: &str, reason: String) -> Self {
        Verdict::Deny {
            rule: rule.to_string(),
            reason,
        }
    }

    /// Whether publication may go on.
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Allow)
    }

    /// `rule: reason`, or empty when allowed.
    pub fn denial(&self) -> String {
        match self {
            Verdict::Allow => String::new(),
            Verdict::Deny { rule, reason } => format!("{rule}: {reason}"),
        }
    }

    /// One line for summaries.
    pub fn summary(&self) -> String {
        match self {
            Verdict::Allow => "policy passed".to_string(),
            Verdict::Deny { .. } => format!("denied by {}", self.denial()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_text() {
        let verdict = Verdict::deny("image_size", "too big".to_string());
        assert!(!verdict.passed());
        assert_eq!(verdict.denial(), "image_size: too big");
        assert_eq!(Verdict::Allow.summary(), "policy passed");
    }
}
