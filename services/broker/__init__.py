"""The embedded Kafka-compatible broker (Tansu) for development, tests and the demo."""
