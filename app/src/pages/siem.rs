//! SIEM sink settings in the dashboard: add, test, enable, and watch delivery lag.
