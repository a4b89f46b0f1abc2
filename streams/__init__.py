"""Kafka I/O, the stream processor, the embedded broker, the serving app and the CLI."""
