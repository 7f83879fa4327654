"""Creating applications: the one place credentials exist in plain text, once, for the caller."""

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
from opendispatch.store.protocol import Store
from opendispatch.store.records import Application, ApplicationCredentials
from opendispatch.timefmt import now_ms

__all__ = ["ProvisionedApplication", "provision_application"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvisionedApplication:
    """Returned once by `apps create`; the store keeps only hashes and the public key."""

    application: Application
    api_secret: str
    signature_secret: str
    private_key_pem: str | None  # None when the caller registered their own key

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
        }


async def provision_application(
    store: Store,
    *,
    name: str,
    status_url: str,
    final_report_url: str | None = None,
    public_key_text: str | None = None,
) -> ProvisionedApplication:
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
    )
