#!/usr/bin/env python3
"""Screenshots the live page in real time (docs/img/live-page.png), through headless
Chromium's DevTools protocol, with the standard library only.

  live_page_screenshot.py URL SECONDS OUT.png [WIDTH HEIGHT]

`chromium --screenshot` shoots right after the page loads, and its --virtual-time-budget
fast-forwards the page's one-second timer, so neither shows minutes of real load. This lets
the page poll in real time for SECONDS, then asks for a screenshot over the DevTools
WebSocket (a minimal client: one text message out, frames in until the reply).
"""
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request


def ws_connect(url):
    assert url.startswith("ws://")
    host_port, path = url[5:].split("/", 1)
    host, port = host_port.split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += sock.recv(4096)
    if b" 101 " not in reply.split(b"\r\n", 1)[0]:
        raise RuntimeError(reply.decode(errors="replace"))
    return sock, reply.split(b"\r\n\r\n", 1)[1]


def ws_send(sock, text):
    data = text.encode()
    mask = os.urandom(4)
    header = bytes([0x81])
    if len(data) < 126:
        header += bytes([0x80 | len(data)])
    else:
        header += bytes([0x80 | 126]) + struct.pack(">H", len(data))
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def ws_messages(sock, pending):
    buffer = pending

    def need(n):
        nonlocal buffer
        while len(buffer) < n:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise EOFError
            buffer += chunk
        out, buffer = buffer[:n], buffer[n:]
        return out

    message = b""
    while True:
        first, second = need(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack(">H", need(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", need(8))[0]
        message += need(length)
        if first & 0x80:
            yield message.decode()
            message = b""


def main():
    if len(sys.argv) not in (4, 6):
        print(__doc__, file=sys.stderr)
        return 2
    url, seconds, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    width, height = (sys.argv[4], sys.argv[5]) if len(sys.argv) == 6 else ("1200", "1240")
    profile = tempfile.mkdtemp(prefix="polyecho-chromium-")
    browser = subprocess.Popen(
        ["chromium", "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
         "--no-first-run", f"--user-data-dir={profile}", f"--window-size={width},{height}",
         "--remote-debugging-port=0", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.monotonic() + 30
        while not os.path.exists(port_file) or os.path.getsize(port_file) == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = open(port_file).read().split()[0]
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        time.sleep(seconds)  # the page polls the server meanwhile, in real time
        sock, pending = ws_connect(page["webSocketDebuggerUrl"])
        ws_send(sock, json.dumps({"id": 1, "method": "Page.captureScreenshot",
                                  "params": {"format": "png"}}))
        for text in ws_messages(sock, pending):
            reply = json.loads(text)
            if reply.get("id") == 1:
                with open(out, "wb") as f:
                    f.write(base64.b64decode(reply["result"]["data"]))
                return 0
    finally:
        browser.terminate()
        browser.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
