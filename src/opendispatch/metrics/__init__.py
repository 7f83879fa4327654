"""What `GET /metrics` serves, in Prometheus' text format: counters and histograms each
process keeps as things happen (`instruments`), and queue depths read from the database
when it is scraped (`queues`)."""

from opendispatch.metrics.instruments import Metrics
from opendispatch.metrics.queues import QueueDepths

__all__ = ["Metrics", "QueueDepths"]
