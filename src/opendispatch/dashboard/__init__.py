"""The operators' dashboard, served by `opendispatch serve` under `/dashboard`: workflows and
webhooks across applications, an overview, cancel and replay, for signed-in operators.

Pages are rendered on the server (Jinja2 templates, autoescaped), with one small script for
confirmations; the stylesheet and script come from this package, so nothing is fetched from
elsewhere and there is no build step.
"""

from opendispatch.dashboard.app import Dashboard

__all__ = ["Dashboard"]
