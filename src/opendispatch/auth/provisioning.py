"""Creating and changing applications: the one place credentials exist in plain text, once,
for the caller (a new application's, a rotated API secret)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from opendispatch.auth.keys import generate_key_pair, public_key_pem_from_file_text
from opendispatch.auth.secrets import (
    hash_secret,
    new_api_key,
    new_api_secret,
    new_signature_secret,
)
from opendispatch.errors import ConfigurationError
from opendispatch.store.protocol import Store
from opendispatch.store.records import (
    Application,
    ApplicationChange,
    ApplicationCredentials,
    UpdatedApplication,
)
from opendispatch.timefmt import iso_ms, now_ms
from opendispatch.webhooks.destinations import (
    AddressPolicy,
    RefusedDestination,
    check_destination,
    redact_url,
    url_problem,
)

__all__ = [
    "ProvisionedApplication",
    "RotatedSecret",
    "change_application",
    "check_webhook_urls",
    "provision_application",
    "rotate_api_secret",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvisionedApplication:
    """Returned once by `apps create`; the store keeps only hashes and the public key."""

    application: Application
    api_secret: str
    signature_secret: str
    private_key_pem: str | None  # None when the caller registered their own key
    warnings: tuple[str, ...] = ()  # about its webhook URLs, for the person creating it

    def as_json(self) -> dict[str, str | None]:
        app = self.application
        return {
            "application_id": app.application_id,
            "name": app.name,
            "api_key": app.api_key,
            "api_secret": self.api_secret,
            "private_key": self.private_key_pem,
            "signature_secret": self.signature_secret,
            "status_url": app.status_url,
            "final_report_url": app.final_report_url,
            "mode": "live" if app.live else "sandbox",
        }


async def provision_application(
    store: Store,
    *,
    name: str,
    status_url: str,
    final_report_url: str | None = None,
    public_key_text: str | None = None,
    address_policy: AddressPolicy | None = None,
    live: bool = False,
) -> ProvisionedApplication:
    """Create an application (a sandbox one unless `live`). Its webhook URLs must have a
    valid form (always) and, given an `address_policy`, point where deliveries may go (see
    `webhooks.destinations`)."""
    warnings = await check_webhook_urls(
        {"status_url": status_url, "final_report_url": final_report_url}, address_policy
    )
    if public_key_text is None:
        pair = generate_key_pair()
        public_key_pem, private_key_pem = pair.public_key_pem, pair.private_key_pem
    else:
        public_key_pem, private_key_pem = public_key_pem_from_file_text(public_key_text), None
    application = Application(
        application_id=str(uuid.uuid4()),
        name=name,
        api_key=new_api_key(),
        status_url=status_url,
        final_report_url=final_report_url,
        created_at_ms=now_ms(),
        live=live,
    )
    api_secret, signature_secret = new_api_secret(), new_signature_secret()
    await store.create_application(
        ApplicationCredentials(
            application=application,
            api_secret_hash=hash_secret(api_secret),
            signature_secret=signature_secret,
            public_key_pem=public_key_pem,
        )
    )
    return ProvisionedApplication(
        application=application,
        api_secret=api_secret,
        signature_secret=signature_secret,
        private_key_pem=private_key_pem,
        warnings=warnings,
    )


async def change_application(
    store: Store,
    application_id: str,
    change: ApplicationChange,
    *,
    address_policy: AddressPolicy | None = None,
    now_ms: int,
) -> tuple[UpdatedApplication | None, tuple[str, ...]]:
    """Change an application's name or webhook URLs (checked as `provision_application`
    checks them, before anything changes). Its webhooks not delivered yet go to the new URLs:
    the old ones are presumably wrong or going away. (None, ...) if there is no such
    application; the warnings are about its new URLs."""
    warnings = await check_webhook_urls(
        {"status_url": change.status_url, "final_report_url": change.final_report_url},
        address_policy,
    )
    return await store.update_application(application_id, change, now_ms=now_ms), warnings


@dataclass(frozen=True, slots=True, kw_only=True)
class RotatedSecret:
    """Returned once by `apps rotate-secret`: the store keeps only the new secret's hash."""

    application_id: str
    api_key: str
    api_secret: str
    previous_valid_until_ms: int | None  # None: the replaced secret stopped working at once

    def as_json(self) -> dict[str, str | None]:
        until = self.previous_valid_until_ms
        return {
            "application_id": self.application_id,
            "api_key": self.api_key,
            "api_secret": self.api_secret,
            "previous_secret_valid_until": None if until is None else iso_ms(until),
        }


async def rotate_api_secret(
    store: Store, application_id: str, *, grace_s: int, now_ms: int
) -> RotatedSecret | None:
    """A new API secret for the application; the one it replaces keeps working for `grace_s`
    seconds (0: it stops at once), so clients can move over without a failed request. None
    if there is no such application."""
    application = await store.get_application(application_id)
    if application is None:
        return None
    api_secret = new_api_secret()
    until = now_ms + grace_s * 1000 if grace_s > 0 else None
    if not await store.rotate_api_secret(
        application_id, hash_secret(api_secret), previous_expires_at_ms=until
    ):
        return None
    return RotatedSecret(
        application_id=application_id,
        api_key=application.api_key,
        api_secret=api_secret,
        previous_valid_until_ms=until,
    )


async def check_webhook_urls(
    urls: dict[str, str | None], policy: AddressPolicy | None
) -> tuple[str, ...]:
    """Refuse (ConfigurationError naming the setting) a URL no webhook may be sent to."""
    warnings = []
    for setting, url in urls.items():
        if url is None:
            continue
        try:
            if policy is None:
                problem = url_problem(url)
                if problem is not None:
                    raise RefusedDestination(f"{redact_url(url)} {problem}")
            else:
                warning = await check_destination(url, policy)
                if warning is not None:
                    warnings.append(f"{setting}: {warning}")
        except RefusedDestination as exc:
            hint = (
                " (--allow-private-webhooks allows private addresses)"
                if policy is not None and "address" in str(exc)
                else ""
            )
            raise ConfigurationError(f"{setting} {exc}{hint}") from None
    return tuple(warnings)
