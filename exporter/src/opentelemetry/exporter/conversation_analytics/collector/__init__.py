"""The OTLP collector service: receivers, sessionizing, abandonment inference."""
