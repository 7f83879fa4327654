"""Print each webhook whose signature checks out, refuse the others (README "Try it").

Run: SIGNATURE_SECRET=... python examples/receiver.py [PORT]   (port 9000 by default)
"""

import hashlib
import hmac
import http.server
import json
import os
import sys

import jwt  # PyJWT, installed with opendispatch

SECRET = os.environ["SIGNATURE_SECRET"]  # the application's signature_secret


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        try:  # HS256 with the secret, then payload_hash against the SHA-256 of this very body
            claims = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="Vonage")
            valid = hmac.compare_digest(claims["payload_hash"], hashlib.sha256(body).hexdigest())
        except (jwt.InvalidTokenError, KeyError, TypeError):
            valid = False
        self.send_response(200 if valid else 401)
        self.end_headers()
        if not valid:
            print("refused a webhook: bad signature", flush=True)
            return
        event = json.loads(body)
        channel = event.get("to", {}).get("type", "final report")
        print(event["timestamp"], f"{channel:<12}", event["status"], flush=True)

    def log_message(self, *args: object) -> None:  # one line per webhook is enough
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
http.server.ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
