//! SIEM sinks in the store: configuration, sealed secrets, delivery cursors and leases.

use super::Store;

impl Store {}
