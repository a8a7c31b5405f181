# With the count_alloc.so shim preloaded into the server: python3 alloc_round_trips.py PORT PID N
# Prints (server stderr) the allocation totals before and after N 100-byte round trips.
import socket, sys, os, signal, time
port=int(sys.argv[1]); pid=int(sys.argv[2]); n=int(sys.argv[3])
s=socket.create_connection(("127.0.0.1",port))
s.sendall(b"warm"); s.recv(4)
os.kill(pid, signal.SIGUSR1); time.sleep(0.2)
for i in range(n):
    s.sendall(b"x"*100); got=0
    while got<100: got+=len(s.recv(100-got))
os.kill(pid, signal.SIGUSR1); time.sleep(0.2)
