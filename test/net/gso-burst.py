#!/usr/bin/env python3
# A leased peer's UDP GSO bursts: each sendmsg carries `segments` VXLAN datagrams of one size (UDP_SEGMENT, udp(7)),
# which the receiver's UDP GRO may hand over as one buffer of up to 128 datagrams. Inner packets: ICMP echo requests
# from `innerSrc` to `innerDst`. Usage: gso-burst.py <json spec>; spec: fromIp, toIp, port, vni, srcMac, dstMac,
# innerSrc, innerDst, segments, bursts. Prints the number of datagrams sent.
import json
import socket
import struct
import sys

SOL_UDP = 17
UDP_SEGMENT = 103  # include/uapi/linux/udp.h


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def inner_packet(src: str, dst: str, seq: int) -> bytes:
    payload = bytes(i & 0xFF for i in range(56))
    icmp = struct.pack("!BBHHH", 8, 0, 0, 0x4243, seq & 0xFFFF) + payload
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq & 0xFFFF, 0, 64, 1, 0, socket.inet_aton(src), socket.inet_aton(dst))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + icmp


def mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


spec = json.loads(sys.argv[1])
vxlan = struct.pack("!B3sI", 0x08, b"\0\0\0", spec["vni"] << 8)
ethernet = mac(spec["dstMac"]) + mac(spec["srcMac"]) + b"\x08\x00"
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((spec["fromIp"], 0))
sent = 0
for burst in range(spec["bursts"]):
    frames = [vxlan + ethernet + inner_packet(spec["innerSrc"], spec["innerDst"], burst * 1000 + i) for i in range(spec["segments"])]
    size = len(frames[0])
    sock.sendmsg([b"".join(frames)], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))], 0, (spec["toIp"], spec["port"]))
    sent += len(frames)
print(sent)
