//! TEMPORARY placeholder, replaced by the real classifier before commit.
use crate::protocol::{Risk, RiskLevel, Tool};
pub fn classify(_tool: Tool, _code: &str) -> Risk {
    Risk {
        level: RiskLevel::High,
        reasons: vec!["placeholder".into()],
    }
}
