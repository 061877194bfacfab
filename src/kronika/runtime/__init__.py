"""The processing runtime: projections and reactors with partitions, failures and leases."""

from kronika.runtime.processor import Context, Processor, ProcessorKind, Projection, Reactor, on
from kronika.runtime.worker import Worker

__all__ = ["Context", "Processor", "ProcessorKind", "Projection", "Reactor", "Worker", "on"]
