//! SIEM delivery against test receivers (syslog over TCP and UDP, a Splunk HEC, a webhook).
