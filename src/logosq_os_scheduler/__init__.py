"""logosq-os-scheduler: a hybrid quantum-classical task scheduler.

The public face of the package: everything a user needs is importable from here, and only
what is listed in ``__all__`` is public. The core imports nothing beyond the standard library;
Qiskit, Ray, prometheus-client, rich and matplotlib are imported only by the parts that use
them.

The package logs to the ``"logosq_os_scheduler"`` logger and, as a library should, stays
silent until its user configures logging (``logging.basicConfig()``, or
``observability.configure_logging()``): a ``NullHandler`` keeps Python's last-resort handler
from printing its warnings to stderr.
"""

import logging as _logging

from ._blocking import BlockingScheduler
from ._clock import Clock, LoopClock, ManualClock, MonotonicClock
from ._config import Durability, FairShare, PreemptionStrategy, SchedulerConfig
from ._context import TaskContext, current_context
from ._errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    InternalError,
    InterruptedByRestartError,
    InvalidConfigError,
    InvalidRequestError,
    InvalidTaskError,
    JournalError,
    KeyReusedError,
    MissingExtraError,
    NoRouteError,
    PermanentBackendError,
    PermissionDeniedError,
    QueueFullError,
    QuotaExceededError,
    RetriesExhaustedError,
    SchedulerClosedError,
    SchedulerError,
    ServiceError,
    ServiceUnavailableError,
    SimulationTooCostlyError,
    TaskCancelledError,
    TaskError,
    TaskFailedError,
    TaskTimeoutError,
    TransientBackendError,
    UnknownTaskError,
)
from ._handle import TaskHandle
from ._result import TaskResult
from ._runtime import new_event_loop, run
from ._scheduler import QuantumScheduler
from ._task import Task, TaskBuilder, TaskPriority, TaskStatus, TaskType
from .backends import (
    Backend,
    CircuitJob,
    CircuitRequirements,
    CircuitSpec,
    MockBackend,
    MockQPUService,
    RemoteMockBackend,
)
from .core._overhead import RoutingOverhead
from .core._routing import RoutingCondition, RoutingDecision, RoutingRule, RoutingTarget
from .executors import Executor, ProcessExecutor, ResourceLimitError, WorkerCrashedError
from .observability import BackendMetrics, SchedulerMetrics
from .security import ResultSigner, SignedRecord, verify_result
from .workflows import (
    HybridWorkflow,
    WorkflowError,
    WorkflowResult,
    WorkflowStep,
    run_workflow,
    start_workflow,
)

__version__ = "0.1.0"

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "AuthenticationError",
    "Backend",
    "BackendError",
    "BackendMetrics",
    "BackendUnavailableError",
    "BlockingScheduler",
    "CircuitJob",
    "CircuitRequirements",
    "CircuitSpec",
    "Clock",
    "Durability",
    "Executor",
    "FairShare",
    "InternalError",
    "InterruptedByRestartError",
    "InvalidConfigError",
    "InvalidRequestError",
    "InvalidTaskError",
    "HybridWorkflow",
    "JournalError",
    "KeyReusedError",
    "LoopClock",
    "ManualClock",
    "MissingExtraError",
    "MockBackend",
    "MockQPUService",
    "MonotonicClock",
    "NoRouteError",
    "PermanentBackendError",
    "PermissionDeniedError",
    "PreemptionStrategy",
    "ProcessExecutor",
    "QuantumScheduler",
    "QueueFullError",
    "QuotaExceededError",
    "RayExecutor",
    "RemoteMockBackend",
    "ResourceLimitError",
    "ResultSigner",
    "RetriesExhaustedError",
    "RoutingCondition",
    "RoutingDecision",
    "RoutingOverhead",
    "RoutingRule",
    "RoutingTarget",
    "SchedulerClosedError",
    "SchedulerConfig",
    "SchedulerError",
    "SchedulerMetrics",
    "ServiceError",
    "ServiceUnavailableError",
    "SignedRecord",
    "SimulationTooCostlyError",
    "Task",
    "TaskBuilder",
    "TaskCancelledError",
    "TaskContext",
    "TaskError",
    "TaskFailedError",
    "TaskHandle",
    "TaskPriority",
    "TaskResult",
    "TaskStatus",
    "TaskTimeoutError",
    "TaskType",
    "TransientBackendError",
    "UnknownTaskError",
    "WorkflowError",
    "WorkflowResult",
    "WorkflowStep",
    "WorkerCrashedError",
    "__version__",
    "current_context",
    "new_event_loop",
    "run",
    "run_workflow",
    "start_workflow",
    "verify_result",
]


def __getattr__(name: str) -> object:
    # RayExecutor imports Ray: load it only when asked for.
    if name == "RayExecutor":
        from .executors._ray import RayExecutor

        return RayExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
