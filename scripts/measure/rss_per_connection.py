# Resident memory per connection: python3 rss_per_connection.py BACKEND N [server flags...]
# Opens N idle connections, then one 100-byte echo on each, and prints VmRSS deltas / N.
import os, socket, subprocess, sys, time, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
backend=sys.argv[1]; n=int(sys.argv[2]); extra=sys.argv[3:]
srv=subprocess.Popen([os.environ.get("POLYECHO_SERVER", "build/release/server/polyecho-server"),"--backend",backend,"--port","0"]+extra, stdout=subprocess.PIPE, text=True)
line=srv.stdout.readline(); port=int(line.rsplit(":",1)[1])
def rss():
    for l in open(f"/proc/{srv.pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1])
time.sleep(0.3); base=rss()
cs=[socket.create_connection(("127.0.0.1",port)) for _ in range(n)]
# one round trip on the last one proves the server has taken every earlier connection in
s=cs[-1]; s.sendall(b"p"); s.recv(1)
time.sleep(0.5); connected=rss()
for c in cs: c.sendall(b"x"*100)
for c in cs:
    got=0
    while got<100: got+=len(c.recv(100-got))
time.sleep(0.5); after=rss()
print(f"{backend} {' '.join(extra)} n={n} base={base}KiB connected={connected}KiB (+{(connected-base)*1024/n:.0f} B/conn) after_one_echo={after}KiB (+{(after-base)*1024/n:.0f} B/conn)")
srv.terminate(); srv.wait()
