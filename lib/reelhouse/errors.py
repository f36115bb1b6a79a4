"""The one error hierarchy of reelhouse. Every message says what to do next.

A few exceptions live next to their code on purpose: they are control flow inside one module and
never reach a user (``events.contract.Invalid`` becomes a quarantine reason, ``stack.health.ServiceExited``
a StackError, ``serving.security.RequestError`` an HTTP answer, ``serving.store_client.StoreUnavailable`` a
degraded feed, ``serving.ranking.UnsupportedModel`` the slower scoring path).
"""


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


class EvaluationError(ReelhouseError):
    """Evaluation data or a model cannot be evaluated as asked."""


class InteractionLogError(EvaluationError):
    """An interaction log or item-features file cannot be read as asked."""


class ExperimentDataError(ReelhouseError, ValueError):
    """The data handed to the A/B analysis cannot be analysed as given."""


class CatalogueError(ReelhouseError, ValueError):
    """The simulator's catalogue cannot be built or read as asked (a bad seed, mismatched files)."""
