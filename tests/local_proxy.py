"""A reverse proxy on loopback for tests: forwards every request to the app, appending the address it saw to
X-Forwarded-For as nginx's `$proxy_add_x_forwarded_for` does, and streams responses back (Gradio's queue answers with
server-sent events). It connects to the app from 127.0.0.1; visitors reach it from other loopback addresses
(127.0.0.2, ...), so the app can tell them apart only through the header."""

from __future__ import annotations

import http.client
import http.server
import socket
import threading

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


SOURCE = "127.0.0.5"  # the proxy's own address, as the app sees it


class DualStackServer(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 peers too, as ::ffff:a.b.c.d
        super().server_bind()


def start(upstream_port: int) -> tuple[http.server.ThreadingHTTPServer, int]:
    """A proxy to 127.0.0.1:`upstream_port`, listening on every loopback address; (server, its port)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection; the body ends when the connection closes

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"x-forwarded-for"}}
            forwarded = ", ".join([*self.headers.get_all("X-Forwarded-For", []), self.client_address[0]])
            headers["X-Forwarded-For"] = forwarded
            upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=600, source_address=(SOURCE, 0))
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP | {"content-length"}:
                    self.send_header(key, value)
            self.end_headers()
            while chunk := response.read1(65536):
                self.wfile.write(chunk)
                self.wfile.flush()
            upstream.close()

        do_GET = do_POST = do_PUT = do_DELETE = forward

        def log_message(self, *args):
            pass

    server = DualStackServer(("::", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]
