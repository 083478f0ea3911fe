"""A raw HTTP/2 client for tests: python-hyper's ``h2`` over a blocking
socket (plain, prior knowledge, or TLS with ALPN ``h2``), with no header
checks of its own, so a test can send what a well-behaved client never
would; ``send_raw`` sends hand-built frames (hyperframe).
"""
import socket
import ssl

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions


class H2Client:
    def __init__(self, port, tls_ca=None, timeout=10, settings=None):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls_ca is not None:
            ctx = ssl.create_default_context(cafile=str(tls_ca))
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        config = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                           validate_outbound_headers=False,
                                           normalize_outbound_headers=False,
                                           validate_inbound_headers=False)
        self.h2 = h2.connection.H2Connection(config)
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.flush()
        self.events = []
        self.closed = False
        self.received = bytearray()   # every byte from the server, for goaway()

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data):
        self.flush()
        self.sock.sendall(data)

    def request(self, path, method="GET", headers=(), body=None, end=True,
                authority="localhost"):
        """Open a stream; its id."""
        sid = self.h2.get_next_available_stream_id()
        fields = [(b":method", method.encode()), (b":scheme", b"http"),
                  (b":path", path.encode()), (b":authority", authority.encode())]
        fields += [(n.encode() if isinstance(n, str) else n,
                    v.encode() if isinstance(v, str) else v) for n, v in headers]
        self.h2.send_headers(sid, fields, end_stream=end and body is None)
        if body is not None:
            self.h2.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def pump(self, ack=True):
        """Read once; the new events (``closed`` set at an empty read).
        With ``ack``, DATA is acknowledged at once (both windows)."""
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            return []
        self.received += data
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            events = []
        if ack:
            for event in events:
                if isinstance(event, h2.events.DataReceived):
                    self.h2.acknowledge_received_data(event.flow_controlled_length,
                                                      event.stream_id)
        self.flush_quietly()
        self.events += events
        return events

    def flush_quietly(self):
        try:
            self.flush()
        except OSError:
            pass

    def response(self, sid):
        """(status, headers dict, body) of stream ``sid``; status is
        ("reset", code) for a stream the server reset."""
        status, headers, body = None, {}, b""
        while True:
            rest = []
            for i, event in enumerate(self.events):
                if getattr(event, "stream_id", None) != sid:
                    rest.append(event)
                elif isinstance(event, h2.events.ResponseReceived):
                    headers = dict(event.headers)
                    status = int(headers[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                elif isinstance(event, h2.events.StreamReset):
                    self.events = rest + self.events[i + 1:]
                    return ("reset", event.error_code), headers, body
                elif isinstance(event, h2.events.StreamEnded):
                    self.events = rest + self.events[i + 1:]
                    return status, headers, body
            self.events = rest
            self.flush_quietly()
            if self.closed:
                raise ConnectionError(f"connection closed before stream {sid} ended")
            self.pump()

    def get(self, path, **kw):
        return self.response(self.request(path, **kw))

    def goaway(self):
        """Read until the server's GOAWAY and the end of the connection:
        (error code, last stream id) of the GOAWAY, or None if none came."""
        found = None
        while not self.closed:
            for event in self.pump():
                if isinstance(event, h2.events.ConnectionTerminated):
                    found = (event.error_code, event.last_stream_id)
        for event in self.events:
            if isinstance(event, h2.events.ConnectionTerminated):
                found = (event.error_code, event.last_stream_id)
        return found or self._goaway_frame()

    def _goaway_frame(self):
        """The GOAWAY among the raw frames received, for when the h2
        library gave up parsing first (frames on a stream it never opened)."""
        data, at = self.received, 0
        while at + 9 <= len(data):
            length = int.from_bytes(data[at:at + 3], "big")
            if data[at + 3] == 0x7 and at + 9 + 8 <= len(data):
                payload = data[at + 9:at + 17]
                return (h2.errors.ErrorCodes(int.from_bytes(payload[4:8], "big")),
                        int.from_bytes(payload[:4], "big") & 0x7FFFFFFF)
            at += 9 + length
        return None

    def close(self):
        self.sock.close()
