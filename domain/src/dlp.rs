//! Data-loss prevention: detectors for secrets and personal data in tool traffic, and the
//! settings that say what to do with a finding (redact, block, log only).
