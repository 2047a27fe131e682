"""stopguard: SMS opt-out enforcement on Kafka."""

__version__ = "0.1.0"
