//! SIEM streaming: delivery of audit events to syslog, Splunk HEC and webhook sinks.
