"""stopguard's exceptions.

StopguardError
 +-- ConfigurationError   a setting or topic definition is wrong
 +-- BrokerError          the Kafka cluster could not be reached or used
 +-- InvalidRecord        an input record cannot be processed (dead letter)
"""


class StopguardError(Exception):
    """Base class of every error stopguard raises on purpose."""


class ConfigurationError(StopguardError):
    """A setting or topic definition is wrong; the message names it."""


class BrokerError(StopguardError):
    """The Kafka cluster could not be reached or refused an operation."""


class InvalidRecord(StopguardError):
    """An input record is unreadable or breaks the wire contract."""
