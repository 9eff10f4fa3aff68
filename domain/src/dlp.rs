//! Data-loss prevention: TEMPORARY interface stub until the detector module lands.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DlpAction {
    #[default]
    LogOnly,
    Redact,
    Block,
}

pub const BUILTIN_DETECTORS: &[&str] = &["email"];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CustomDetector {
    pub name: String,
    pub pattern: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct DlpSettings {
    pub enabled: bool,
    pub detectors: Vec<String>,
    pub custom: Vec<CustomDetector>,
    pub default_action: DlpAction,
    pub connector_actions: BTreeMap<String, DlpAction>,
    pub group_actions: BTreeMap<String, DlpAction>,
    pub scan_arguments: bool,
}

impl Default for DlpSettings {
    fn default() -> Self {
        DlpSettings {
            enabled: true,
            detectors: BUILTIN_DETECTORS.iter().map(|s| s.to_string()).collect(),
            custom: vec![],
            default_action: DlpAction::Redact,
            connector_actions: BTreeMap::new(),
            group_actions: BTreeMap::new(),
            scan_arguments: false,
        }
    }
}

impl DlpSettings {
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
    pub fn action_for(&self, connector: &str, groups: &[&str]) -> DlpAction {
        let mut a = *self
            .connector_actions
            .get(connector)
            .unwrap_or(&self.default_action);
        for g in groups {
            if let Some(x) = self.group_actions.get(*g) {
                a = a.max(*x);
            }
        }
        a
    }
}

pub type Findings = BTreeMap<String, u64>;

#[cfg(feature = "ssr")]
pub struct Scanner;

#[cfg(feature = "ssr")]
impl Scanner {
    pub fn new(_settings: &DlpSettings) -> Result<Scanner, String> {
        Ok(Scanner)
    }
    pub fn scan_str(&self, _s: &str, _redact: bool, _findings: &mut Findings) -> Option<String> {
        None
    }
    pub fn scan_json(&self, _v: &mut serde_json::Value, _redact: bool) -> Findings {
        Findings::new()
    }
}
