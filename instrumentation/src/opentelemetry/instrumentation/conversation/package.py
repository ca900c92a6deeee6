"""What this instrumentation wraps: nothing third-party; it needs only the OpenTelemetry API."""

_instruments: tuple[str, ...] = ()
