"""Every kind of provider OpenDispatch can send through, by the name `--kind` takes, and the
settings every kind shares."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from opendispatch.providers import telnyx, twilio, vonage, whatsapp_cloud
from opendispatch.providers.kinds import ProviderKind, Setting

__all__ = ["COMMON_SETTINGS", "KINDS", "rate_of"]

KINDS: Final[Mapping[str, ProviderKind]] = MappingProxyType(
    {kind.name: kind for kind in (vonage.KIND, twilio.KIND, whatsapp_cloud.KIND, telnyx.KIND)}
)

# Settings any account may have, read by the runtime rather than the adapter.
COMMON_SETTINGS: Final = (
    Setting(
        key="rate",
        description="messages per second this process sends through the account "
        "(default: the provider's documented limit)",
    ),
)


def rate_of(kind: ProviderKind, settings: Mapping[str, str]) -> float:
    """The account's rate: `rate` if set (checked positive when stored), else the kind's."""
    given = settings.get("rate")
    return float(given) if given else kind.default_rate_per_s
