#!/usr/bin/env python3
"""One thread plays a DNS client and server over loopback: sendto, recvfrom, sendto, recv, N
times, as cost.sh's pingpong part runs it. Four DNS messages an exchange, each hooked once, with
nothing else on the machine busy: the steadiest measure of the hooks' time per message.

usage: pingpong.py N PORT (the server binds 127.0.0.1:PORT)"""
import socket
import sys

n, port = int(sys.argv[1]), int(sys.argv[2])
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", port))
client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
client.bind(("127.0.0.1", 0))
# www.google.com A, and its answer 10.0.0.1 (never resolved: both ends are here).
query = bytes.fromhex("1234010000010000000000000377777706676f6f676c6503636f6d0000010001")
answer = bytes.fromhex(
    "1234818000010001000000000377777706676f6f676c6503636f6d0000010001"
    "c00c000100010000012c00040a000001"
)
for _ in range(n):
    client.sendto(query, ("127.0.0.1", port))
    _, peer = server.recvfrom(512)
    server.sendto(answer, peer)
    client.recv(512)
