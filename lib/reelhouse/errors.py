"""The one error hierarchy of reelhouse. Every message says what to do next."""


class ReelhouseError(Exception):
    """Base class of every error reelhouse raises on purpose."""


class ConfigError(ReelhouseError):
    """A configuration file is missing, unreadable or invalid."""


class PrerequisiteError(ReelhouseError):
    """Something the machine must provide (Java, a binary, a port) is missing."""


class StackError(ReelhouseError):
    """A local service could not be started, stopped or reached."""


class KafkaSourceError(ReelhouseError):
    """Kafka offsets or topics a reader was asked for do not exist."""


class StreamError(ReelhouseError):
    """A streaming query could not start or stopped: data loss, a checkpoint in use, a failed batch."""


class LakeError(ReelhouseError):
    """A Delta table could not be read or committed."""


class ContractError(ReelhouseError):
    """An event does not follow the activity-log contract."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class SimulationError(ReelhouseError):
    """The traffic simulator could not produce (or have confirmed) everything it generated."""

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report
