//! Event exporters (OTLP and other sinks). Empty until the exporter issue.
