#!/usr/bin/env python3
"""Measures, per backend, the figures docs/RELIABILITY.md reports:
  - EMFILE: server under `prlimit --nofile=64`, one served client, 300 more connection attempts
    held open; server CPU (utime+stime, children included) over a 3 s window, and the time
    from closing the 300 until a newcomer gets its echo (recovery).
  - Slow reader: a client writes up to 64 MiB without reading (--max-buffer 1 MiB); the growth
    of the largest server process's RSS over its idle RSS.
Usage: scripts/measure/hostile_figures.py [BUILD_DIR] [backend ...]   (prints a Markdown table)
Loopback only; every server it starts is stopped by PID."""
import json, os, select, signal, socket, subprocess, sys, time

build = sys.argv[1] if len(sys.argv) > 1 else "build/release"
server_bin = os.path.join(build, "server", "polyecho-server")
TICK = os.sysconf("SC_CLK_TCK")


def start(args, prefix=()):
    p = subprocess.Popen([*prefix, server_bin, "--port", "0", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    return p, int(line.rsplit(":", 1)[1])


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def tree(pid):
    pids = [pid]
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    pids.append(int(name))
            except OSError:
                pass
    return pids


def cpu_seconds(pid):
    total = 0.0
    for i, p in enumerate(tree(pid)):
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if i == 0 else 0)
    return total / TICK


def max_rss_kib(pid):
    best = 0
    for p in tree(pid):
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    best = max(best, int(line.split()[1]))
        except OSError:
            pass
    return best


def echo(port, payload=b"ping", timeout=5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(len(payload) - len(got))
            if not chunk:
                return False
            got += chunk
        return got == payload


def emfile(backend):
    p, port = start(["--backend", backend], ("prlimit", "--nofile=64:64", "--"))
    try:
        a = socket.create_connection(("127.0.0.1", port), timeout=5)
        a.sendall(b"a")
        a.recv(1)
        held = []
        for _ in range(300):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            held.append(s)
        before = cpu_seconds(p.pid)
        time.sleep(3.0)  # the measurement window itself
        cpu = (cpu_seconds(p.pid) - before) / 3.0
        for s in held:
            s.close()
        a.close()
        t0 = time.monotonic()
        recovered = None
        while time.monotonic() - t0 < 15:
            try:
                if echo(port, timeout=1.0):
                    recovered = (time.monotonic() - t0) * 1000
                    break
            except OSError:
                pass
        return cpu, recovered
    finally:
        stop(p)


def slow_reader(backend):
    p, port = start(["--backend", backend, "--max-buffer", "1048576"])
    try:
        time.sleep(0.2)
        idle = max_rss_kib(p.pid)
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        chunk = b"x" * 65536
        sent, stalled_since = 0, None
        while sent < (64 << 20):
            _, w, _ = select.select([], [s], [], 0.5)
            if not w:
                break  # the server stopped reading: its buffer and the socket buffers are full
            try:
                sent += s.send(chunk)
            except BlockingIOError:
                pass
        grown = (max_rss_kib(p.pid) - idle) / 1024
        s.close()
        return grown, sent / (1 << 20)
    finally:
        stop(p)


def main():
    listing = json.loads(subprocess.check_output([server_bin, "--list-backends", "--json"]))
    names = sys.argv[2:] or [b["name"] for b in listing]
    print("| backend | EMFILE: server CPU (cores) | EMFILE: recovery (ms) | slow reader: RSS growth (MiB) | accepted before stall (MiB) |")
    print("| --- | --- | --- | --- | --- |")
    for name in names:
        cpu, rec = emfile(name)
        grown, accepted = slow_reader(name)
        rec_text = f"{rec:.0f}" if rec is not None else "no recovery"
        print(f"| {name} | {cpu:.3f} | {rec_text} | {grown:.1f} | {accepted:.1f} |", flush=True)


main()
