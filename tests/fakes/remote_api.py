"""Fakes of the remote APIs integrations call, over TLS, for Latchkey's
connection-test tests. Standard library only.

Usage: remote_api.py CERT KEY  (expected credentials in $FAKE_CREDENTIALS, JSON)
Prints "listening PORT" once it serves on 127.0.0.1:PORT.

- GET /wc/wp-json/wc/v3/system_status: WooCommerce's REST API, HTTP Basic
  with consumer_key:consumer_secret (exactly), else 401 as WooCommerce answers.
- GET /eco/self: e-conomic's REST API, X-AppSecretToken and
  X-AgreementGrantToken (exactly), else 401.
- GET /bearer/ping: Authorization: Bearer <token>.
- GET /slow/...: answers only after 5 seconds.
- GET /redirect/...: 302 to the cloud metadata address.
Every request's path and headers are appended to $FAKE_LOG (JSON lines).
"""

import base64
import http.server
import json
import os
import ssl
import sys
import time

EXPECTED = json.loads(os.environ.get("FAKE_CREDENTIALS", "{}"))
LOG = os.environ.get("FAKE_LOG")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, body, extra=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if LOG:
            with open(LOG, "a") as f:
                f.write(json.dumps({"path": self.path, "headers": dict(self.headers)}) + "\n")
        if self.path == "/wc/wp-json/wc/v3/system_status":
            wc = EXPECTED["woocommerce"]
            pair = f'{wc["consumer_key"]}:{wc["consumer_secret"]}'.encode()
            if self.headers.get("Authorization") == "Basic " + base64.b64encode(pair).decode():
                # Echoes the key, as some plug-ins do: the excerpt must mask it.
                self.send_json(200, {"environment": {"version": "9.1.0"}, "key": wc["consumer_key"]})
            else:
                self.send_json(401, {"code": "woocommerce_rest_cannot_view", "data": {"status": 401}})
        elif self.path == "/eco/self":
            eco = EXPECTED["economic"]
            if (
                self.headers.get("X-AppSecretToken") == eco["app_secret_token"]
                and self.headers.get("X-AgreementGrantToken") == eco["agreement_grant_token"]
            ):
                self.send_json(200, {"agreementNumber": 123456, "company": {"name": "Kaffeehaus"}})
            else:
                self.send_json(401, {"errorCode": "E04010", "message": "Not authorized"})
        elif self.path == "/bearer/ping":
            if self.headers.get("Authorization") == "Bearer " + EXPECTED["bearer"]["token"]:
                self.send_json(200, {"pong": True})
            else:
                self.send_json(401, {"error": "unauthorized"})
        elif self.path.startswith("/slow/"):
            time.sleep(5)
            self.send_json(200, {"late": True})
        elif self.path.startswith("/redirect/"):
            self.send_json(302, {}, {"Location": "http://169.254.169.254/latest/meta-data/"})
        else:
            self.send_json(404, {"error": "not found"})


def main():
    cert, key = sys.argv[1], sys.argv[2]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
