#!/usr/bin/env python3
"""A stand-in for Stripe's API, for the API fuzzer (scripts/fuzz-api.sh): it answers
POST /v1/checkout/sessions with a Checkout Session in the shape async-stripe parses, the same one
again for a repeated Idempotency-Key, so that the fuzzer reaches the real deposit path. Prints
"listening on PORT" and serves until killed. The Rust tests have their own (tests/api/fake_stripe.rs).

    scripts/fake-stripe.py [port]
"""
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SESSIONS = {}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        if self.path != "/v1/checkout/sessions":
            return self.answer(404, {"error": {"type": "invalid_request_error", "message": "no such path"}})
        key = self.headers.get("idempotency-key", "")
        with LOCK:
            if key not in SESSIONS:
                sid = "cs_test_fuzz_%06d" % (len(SESSIONS) + 1)
                SESSIONS[key] = {
                    "id": sid, "object": "checkout.session", "created": 1700000000,
                    "expires_at": 1700086400, "livemode": False, "mode": "payment",
                    "payment_method_types": ["card"], "payment_status": "unpaid", "status": "open",
                    "automatic_tax": {"enabled": False}, "custom_fields": [], "custom_text": {},
                    "shipping_options": [],
                    "amount_total": int(form.get("line_items[0][price_data][unit_amount]", "0")),
                    "currency": "usd", "client_reference_id": form.get("client_reference_id"),
                    "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
                    "url": "https://checkout.stripe.test/c/pay/" + sid,
                }
            session = SESSIONS[key]
        self.answer(200, session)

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
print("listening on", server.server_address[1], flush=True)
server.serve_forever()
