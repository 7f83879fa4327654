"""Build a `Runtime` from settings: the one place that knows every concrete part."""

from __future__ import annotations

from opendispatch.config import Settings
from opendispatch.errors import ConfigurationError
from opendispatch.metrics.instruments import Metrics
from opendispatch.providers.http import ProviderHttp
from opendispatch.providers.sandbox import SandboxLog, SandboxProvider, SandboxSettings
from opendispatch.providers.secret_box import SecretBox
from opendispatch.retry import RetryPolicy
from opendispatch.runtime.callbacks import CallbackIntake
from opendispatch.runtime.clock import Clock
from opendispatch.runtime.inbox import ProviderInbox
from opendispatch.runtime.provider_directory import ProviderDirectory
from opendispatch.runtime.service import Runtime, RuntimeSettings
from opendispatch.runtime.webhook_worker import WebhookPoster
from opendispatch.store.database import DatabaseStore
from opendispatch.webhooks.client import WebhookClient
from opendispatch.webhooks.destinations import AddressPolicy
from opendispatch.webhooks.signing import Signer

__all__ = ["build_runtime"]


def build_runtime(
    settings: Settings,
    *,
    store: DatabaseStore,
    clock: Clock,
    webhook_client: WebhookPoster | None = None,
    metrics: Metrics | None = None,
) -> Runtime:
    """`metrics`: where the runtime, the providers and the store count what they do."""
    metrics = metrics or Metrics()
    store.connector.observe_commit = metrics.observe_commit
    inbox = ProviderInbox(store)
    sandbox_log = SandboxLog(store.connector)
    sandbox = SandboxProvider(
        sandbox_log,
        inbox,
        clock.now_ms,
        SandboxSettings(
            delivered_after_ms=settings.sandbox_delivered_after_ms,
            read_after_ms=settings.sandbox_read_after_ms,
            prices=settings.sandbox_prices,
        ),
    )
    if webhook_client is None:
        try:
            webhook_client = WebhookClient(
                timeout_s=settings.webhook_timeout_s,
                max_connections=settings.webhook_concurrency,
                max_connections_per_host=settings.webhook_concurrency,
                ca_file=settings.webhook_ca_file,
                address_policy=AddressPolicy(allow_private=settings.allow_private_webhooks),
            )
        except ValueError as exc:  # an unreadable CA file
            raise ConfigurationError(str(exc)) from exc
    directory = ProviderDirectory(
        store,
        sandbox=sandbox,
        http=ProviderHttp(timeout_s=settings.provider_timeout),
        secret_box=SecretBox(settings.secret_key),
        public_url=settings.public_url,
        clock=clock,
        refresh_s=settings.credentials_cache_s,
        count_request=metrics.provider_answered,
    )
    runtime = Runtime(
        store=store,
        clock=clock,
        inbox=inbox,
        providers={sandbox.name: sandbox},
        routes=directory,
        expire_also=(sandbox_log.expire,),
        metrics=metrics,
        webhook_client=webhook_client,
        signer=Signer(issuer=settings.webhook_issuer),
        settings=RuntimeSettings(
            final_status_timeout_s=settings.final_status_timeout_s,
            webhook_retry=RetryPolicy(
                first_delay_ms=1_000,
                max_delay_ms=settings.webhook_max_retry_delay_s * 1000,
                give_up_after_ms=settings.webhook_retry_period_s * 1000,
            ),
            webhook_concurrency=settings.webhook_concurrency,
            webhook_per_application=settings.webhook_per_application,
            webhook_timeout_ms=int(settings.webhook_timeout_s * 1000),
            max_queue_delay_ms=settings.max_queue_delay_ms,
            max_webhook_delay_ms=settings.max_webhook_delay_ms,
            max_loop_lag_ms=settings.max_loop_lag_ms,
            lease_ms=settings.lease_s * 1000,
            retention_ms=None
            if settings.retention_days == 0
            else max(1, int(settings.retention_days * 86_400_000)),
        ),
    )
    runtime.callbacks = CallbackIntake(directory=directory, store=store, inbox=inbox, clock=clock)
    return runtime
