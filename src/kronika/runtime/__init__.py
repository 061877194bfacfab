"""The processing runtime: projections, reactors and sagas with partitions, failures and
leases; inline projections, updated in the append's own transaction."""

from kronika.runtime.inline import InlineContext, InlineProjection
from kronika.runtime.processor import Context, Processor, ProcessorKind, Projection, Reactor, on
from kronika.runtime.saga import Saga, SagaContext
from kronika.runtime.worker import Worker

__all__ = [
    "Context",
    "InlineContext",
    "InlineProjection",
    "Processor",
    "ProcessorKind",
    "Projection",
    "Reactor",
    "Saga",
    "SagaContext",
    "Worker",
    "on",
]
