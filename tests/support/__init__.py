"""Test kit: a broker, worker processes and a Kafka client for scenarios."""
