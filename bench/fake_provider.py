"""A fake provider (tests/fakes/) in its own process, for benchmarks.

    python bench/fake_provider.py KIND CALLBACK_URL

Prints one JSON line, {"url": ..., "settings": {...}}, then serves until terminated. Its
callbacks go where each message's request says, or to CALLBACK_URL (WhatsApp Cloud's
per-account callback URL). Its own CPU is not the server's: it runs apart so the load
generator does not share a GIL with it either.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.telnyx import FakeTelnyx
from tests.fakes.twilio import FakeTwilio
from tests.fakes.vonage import FakeVonage
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud

FAKES = {
    "vonage": FakeVonage,
    "twilio": FakeTwilio,
    "whatsapp-cloud": FakeWhatsAppCloud,
    "telnyx": FakeTelnyx,
}


def main() -> None:
    kind, callback_url = sys.argv[1], sys.argv[2]
    fake = FAKES[kind]().start()
    fake.callback_url = callback_url
    print(json.dumps({"url": fake.url, "settings": fake.account_settings()}), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
