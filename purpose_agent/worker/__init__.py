"""The run queue's consumer: worker processes that claim queued runs and advance them.

``Worker(store, flows=[...], queues=["default"], concurrency=N).run()`` or
``purpose-agent worker --db URL --flow module:attr``. See :class:`Worker`.
"""

from purpose_agent.worker._worker import DEFAULT_TAKEOVER_LIMIT, Worker, WorkerStopping

__all__ = ["DEFAULT_TAKEOVER_LIMIT", "Worker", "WorkerStopping"]
