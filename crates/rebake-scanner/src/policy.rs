//! The scanner's policy. One rule for now: `max-image-size` (config + compressed layers).

/// The configured rules.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Largest image allowed, bytes.
    pub max_image_size_bytes: u64,
}

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

impl Policy {
    /// Applies every rule to an image of `size_bytes`.
    pub fn evaluate(&self, size_bytes: u64) -> Verdict {
        if size_bytes > self.max_image_size_bytes {
            return Verdict::deny(
                "max-image-size",
                format!(
                    "image is {size_bytes} bytes, the limit is {}",
                    self.max_image_size_bytes
                ),
            );
        }
        Verdict::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limit() {
        let policy = Policy {
            max_image_size_bytes: 100,
        };
        assert!(policy.evaluate(100).passed());
        let verdict = policy.evaluate(101);
        assert!(!verdict.passed());
        assert!(verdict.denial().starts_with("max-image-size: image is 101 bytes"));
    }
}
