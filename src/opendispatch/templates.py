"""The templates a workflow is stored with: which API submitted it, and so which webhooks it
gets.

- `failover`: `POST /v0.1/dispatch`, the Dispatch API. Message status webhooks in its shape
  (v0.1's, with `_links.workflow`) to the application's status URL, and one final report.
- `messages_v1`: `POST /v1/messages`, the Messages API v1 (one message, or one with a
  `failover` list). Each step carries v1's own fields in `messages_v1` (its channel name,
  `client_ref`, `webhook_url`, `webhook_version`); its status webhooks are v1's (or v0.1's
  when `webhook_version` asks) and go to the message's `webhook_url` or else the
  application's status URL. v1 has no final report, so none is sent: the workflow's outcome
  is read with `GET /v0.1/dispatch/{workflow_id}`, the dashboard or `opendispatch status`.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DISPATCH", "MESSAGES_V1"]

DISPATCH: Final = "failover"
MESSAGES_V1: Final = "messages_v1"
