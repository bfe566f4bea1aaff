#!/usr/bin/env python3
"""A scripted WebSocket JSON-RPC provider for Switchboard's integration tests.

It plays a Solana or Ethereum node's wss:// subscription endpoint, driven by
a test through a line-oriented control port: in cleartext ws:// by default,
over TLS (wss://) with `--cert FILE --key FILE` (PEM certificate chain and
key; tests/testing/test_certificates.h makes them). Started by
tests/testing/ws_provider_server.cc (WsProviderServer), which integration
tests use; run it by hand with `python3 ws_provider.py` and talk to the
control port with `nc 127.0.0.1 <control_port>`.

It listens on 127.0.0.1 at two ports the kernel picks (WebSocket, control),
then prints `READY <ws_port> <control_port>` on stdout. It exits on SIGTERM,
when its stdin is a pipe or socket that closes, or when its parent dies.

WebSocket side (JSON-RPC 2.0 text frames, one request per frame; batches are
refused with -32600):
  *Subscribe / eth_subscribe   answers a subscription id: Solana style an
                               integer from a counter starting at 1000 (over
                               the whole process, reset or not), eth style
                               "0x" + 32 hex digits; or the configured
                               refusal's error object (`refuse`).
  *Unsubscribe / eth_unsubscribe [<id>]   true when <id> is a live
                               subscription of this connection, else false.
  anything else                -32601 Method not found.
Notifications are built by string concatenation around the raw result text a
test gives (`notify`), so it reaches the client byte for byte:
  {"jsonrpc":"2.0","method":"fooNotification","params":{"result":R,"subscription":S}}
  {"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":S,"result":R}}

Control side: TCP, one JSON object per line in, one line out:
  {"cmd":"stats"}        records as JSON (for people); "stats_hex": the same
                         as tab-separated records with text hex-encoded (for
                         the C++ harness, which has no JSON parser):
                         STATS, O <opened>, C <open conn>,
                         S <conn> x<method> x<params> x<sub>,
                         U <conn> x<method> x<sub> <known 0|1>,
                         P <conn> x<path>, A <conn> x<authorization>,
                         X <conn> <code>: a connection that ended, with the
                         close code the client sent (1006: none), once its
                         TCP connection is closed (after it left `open`).
  {"cmd":"notify","method":M,"params":P?,"result":R}   -> {"sent":K}
  {"cmd":"close","conn":N?}        abort (no close frame) -> {"closed":K}
  {"cmd":"close_clean","conn":N?}  close frame 1001     -> {"closed":K}
  {"cmd":"refuse","method":M,"error":E|null}            -> {"ok":true}
  {"cmd":"freeze"}       stop reading every open connection (no pongs, no
                         requests) -> {"frozen":K}
  {"cmd":"reset"}        aborts every connection, forgets records and
                         refusals; `opened` and connection numbers start
                         again from 0 and 1 -> {"ok":true}
  An unusable request answers {"error":"<why>"}.
Subscribe params are recorded as json.dumps(params, separators=(",",":"),
ensure_ascii=False) ("null" when absent); a notify's params are put in that
form before they are compared. Sub ids are recorded as JSON text (1000,
"0x..." with its quotes).
"""

import argparse
import asyncio
import json
import os
import secrets
import signal
import ssl
import stat
import sys

try:
    import websockets
except ImportError:
    sys.stderr.write(
        "ws_provider.py: the Python module websockets is missing "
        "(Debian: python3-websockets; scripts/setup.sh installs it)\n")
    sys.exit(2)


def canonical(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def hexed(text):
    return "x" + text.encode("utf-8").hex()


class Subscription:
    def __init__(self, conn, method, params, sub):
        self.conn = conn  # The Connection.
        self.method = method
        self.params = params  # Canonical JSON text.
        self.sub = sub  # JSON text of the id.
        if method == "eth_subscribe":
            self.prefix = '{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":' + sub + ',"result":'
            self.suffix = "}}"
        else:
            name = method[: -len("Subscribe")] + "Notification"
            self.prefix = '{"jsonrpc":"2.0","method":' + json.dumps(name) + ',"params":{"result":'
            self.suffix = ',"subscription":' + sub + "}}"


class Connection:
    def __init__(self, number, ws):
        self.number = number
        self.ws = ws
        self.dead = False  # Closed by the control side: ignore what it still says.
        self.subs = {}  # Sub id JSON text -> Subscription.


class Provider:
    def __init__(self):
        self.next_solana_sub = 1000
        self.reset_state()

    def reset_state(self):
        self.opened = 0
        self.next_conn = 1
        self.open = {}  # Number -> Connection.
        self.connections = {}  # Number -> Connection, open or not.
        self.subscribes = []
        self.unsubscribes = []
        self.paths = {}
        self.authorizations = {}
        self.close_codes = {}  # Number -> close code received (1006: none).
        self.refusals = {}  # Method -> raw error JSON text.

    # -- WebSocket side ------------------------------------------------------

    async def serve_ws(self, ws):
        conn = Connection(self.next_conn, ws)
        self.next_conn += 1
        self.opened += 1
        self.open[conn.number] = conn
        self.connections[conn.number] = conn
        self.paths[conn.number] = ws.path
        auth = ws.request_headers.get("Authorization")
        if auth is not None:
            self.authorizations[conn.number] = auth
        try:
            async for message in ws:
                if conn.dead:
                    break
                await self.answer(conn, message)
        except websockets.ConnectionClosed:
            pass
        finally:
            conn.dead = True
            if self.open.get(conn.number) is conn:
                del self.open[conn.number]
            await ws.wait_closed()
            # Not one from before a reset, whose number was given again.
            if self.connections.get(conn.number) is conn:
                self.close_codes[conn.number] = ws.close_code

    async def answer(self, conn, message):
        try:
            request = json.loads(message)
        except (ValueError, TypeError):
            await conn.ws.send('{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}')
            return
        if not isinstance(request, dict):
            await conn.ws.send('{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid request (batches are not supported)"}}')
            return
        id_text = canonical(request.get("id"))
        method = request.get("method")
        if not isinstance(method, str):
            method = ""
        if method == "eth_subscribe" or (method.endswith("Subscribe") and len(method) > len("Subscribe")):
            refusal = self.refusals.get(method)
            if refusal is not None:
                await conn.ws.send('{"jsonrpc":"2.0","id":' + id_text + ',"error":' + refusal + "}")
                return
            if method == "eth_subscribe":
                sub = '"0x' + secrets.token_hex(16) + '"'
            else:
                sub = str(self.next_solana_sub)
                self.next_solana_sub += 1
            params = canonical(request["params"]) if "params" in request else "null"
            # Live (notifiable) only once the answer is written: no
            # notification may overtake it.
            await conn.ws.send('{"jsonrpc":"2.0","result":' + sub + ',"id":' + id_text + "}")
            if conn.dead:
                return
            subscription = Subscription(conn, method, params, sub)
            conn.subs[sub] = subscription
            self.subscribes.append(subscription)
        elif method == "eth_unsubscribe" or (method.endswith("Unsubscribe") and len(method) > len("Unsubscribe")):
            params = request.get("params")
            sub = canonical(params[0]) if isinstance(params, list) and params else "null"
            known = conn.subs.pop(sub, None) is not None
            self.unsubscribes.append((conn.number, method, sub, known))
            await conn.ws.send('{"jsonrpc":"2.0","result":' + ("true" if known else "false") + ',"id":' + id_text + "}")
        else:
            await conn.ws.send('{"jsonrpc":"2.0","id":' + id_text + ',"error":{"code":-32601,"message":"Method not found"}}')

    # -- Control side --------------------------------------------------------

    async def serve_control(self, reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    answer = await self.control(json.loads(line.decode("utf-8")))
                except Exception as e:  # A bad request must not end the provider.
                    answer = canonical({"error": "%s: %s" % (type(e).__name__, e)})
                writer.write(answer.encode("utf-8") + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def selected(self, request):
        if request.get("conn") is None:
            return list(self.open.values())
        conn = self.open.get(int(request["conn"]))
        return [conn] if conn is not None else []

    async def control(self, request):
        cmd = request.get("cmd")
        if cmd == "stats":
            return canonical({
                "opened": self.opened,
                "open": sorted(self.open),
                "subscribes": [{"conn": s.conn.number, "method": s.method, "params": s.params, "sub": s.sub}
                               for s in self.subscribes],
                "unsubscribes": [{"conn": c, "method": m, "sub": s, "known": k}
                                 for (c, m, s, k) in self.unsubscribes],
                "paths": {str(c): p for c, p in self.paths.items()},
                "authorizations": {str(c): a for c, a in self.authorizations.items()},
                "close_codes": {str(c): k for c, k in self.close_codes.items()},
            })
        if cmd == "stats_hex":
            records = ["STATS", "O %d" % self.opened]
            records += ["C %d" % c for c in sorted(self.open)]
            records += ["S %d %s %s %s" % (s.conn.number, hexed(s.method), hexed(s.params), hexed(s.sub))
                        for s in self.subscribes]
            records += ["U %d %s %s %d" % (c, hexed(m), hexed(s), 1 if k else 0)
                        for (c, m, s, k) in self.unsubscribes]
            records += ["P %d %s" % (c, hexed(p)) for c, p in sorted(self.paths.items())]
            records += ["A %d %s" % (c, hexed(a)) for c, a in sorted(self.authorizations.items())]
            records += ["X %d %d" % (c, k) for c, k in sorted(self.close_codes.items())]
            return "\t".join(records)
        if cmd == "notify":
            method = request["method"]
            result = request["result"]
            if not isinstance(result, str):
                raise ValueError("result must be the raw JSON text, as a string")
            params = request.get("params")
            if params is not None:
                params = canonical(json.loads(params))
            targets = [s for s in self.subscribes
                       if s.method == method and (params is None or s.params == params)
                       and not s.conn.dead and s.conn.subs.get(s.sub) is s]
            sent = 0
            for s in targets:
                try:
                    await s.conn.ws.send(s.prefix + result + s.suffix)
                    sent += 1
                except websockets.ConnectionClosed:
                    pass
            return canonical({"sent": sent})
        if cmd == "close":
            conns = self.selected(request)
            for conn in conns:
                conn.dead = True
                del self.open[conn.number]
                conn.ws.transport.abort()
            return canonical({"closed": len(conns)})
        if cmd == "close_clean":
            conns = self.selected(request)
            for conn in conns:
                # Leaves `open` when the closing handshake ends.
                asyncio.ensure_future(conn.ws.close(code=1001, reason="going away"))
            return canonical({"closed": len(conns)})
        if cmd == "refuse":
            method = request["method"]
            error = request.get("error")
            if error is None:
                self.refusals.pop(method, None)
            elif isinstance(error, str):
                self.refusals[method] = error
            else:
                raise ValueError("error must be the raw JSON text, as a string, or null")
            return '{"ok":true}'
        if cmd == "freeze":
            conns = list(self.open.values())
            for conn in conns:
                conn.ws.transport.pause_reading()
            return canonical({"frozen": len(conns)})
        if cmd == "reset":
            for conn in list(self.open.values()):
                conn.dead = True
                try:
                    conn.ws.transport.abort()
                except AttributeError:
                    # Python 3.11's TLS transport, closed twice already (as
                    # websockets does at the end of a close handshake), has
                    # no protocol left to abort: it is going away anyway.
                    pass
            self.reset_state()
            return '{"ok":true}'
        raise ValueError("unknown cmd %r" % (cmd,))


async def watch_stdin(stop):
    mode = os.fstat(0).st_mode
    # /dev/null or a file (as the C++ Subprocess gives) reads EOF at once:
    # only a pipe or socket says anything about the parent.
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass
    stop.set()


async def watch_parent(stop):
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(0.5)
    stop.set()


def tls_context(argv):
    """An SSLContext serving --cert/--key, or None without them."""
    parser = argparse.ArgumentParser(description="A scripted WebSocket JSON-RPC provider.")
    parser.add_argument("--cert", help="PEM certificate chain: serve wss://")
    parser.add_argument("--key", help="PEM private key of --cert")
    args = parser.parse_args(argv)
    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together")
    if args.cert is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    return context


async def main(tls):
    provider = Provider()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # No pings from the provider: a client's keepalive is what tests drive.
    ws_server = await websockets.serve(provider.serve_ws, "127.0.0.1", 0, ping_interval=None,
                                       max_size=None, close_timeout=2, ssl=tls)
    control_server = await asyncio.start_server(provider.serve_control, "127.0.0.1", 0,
                                                limit=1 << 26)
    ws_port = ws_server.sockets[0].getsockname()[1]
    control_port = control_server.sockets[0].getsockname()[1]
    sys.stdout.write("READY %d %d\n" % (ws_port, control_port))
    sys.stdout.flush()
    watchers = [asyncio.ensure_future(watch_stdin(stop)), asyncio.ensure_future(watch_parent(stop))]
    await stop.wait()
    for watcher in watchers:
        watcher.cancel()
    control_server.close()
    for conn in list(provider.open.values()):
        conn.ws.transport.abort()
    ws_server.close()


if __name__ == "__main__":
    asyncio.run(main(tls_context(sys.argv[1:])))
