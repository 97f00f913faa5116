#!/usr/bin/env python3
# Sends hand-made VXLAN or IP-in-IP packets with scapy (python3-scapy), forged outer and inner addresses included,
# for the network tests of what the agent lets in. Usage: forge.py '<JSON list of packet specs>'; each spec:
#   {"encap": "vxlan"|"ipip", "outerSrc", "outerDst", "port" (vxlan), "vni", "srcMac", "dstMac",
#    "innerSrc", "innerDst", "count"}
# Prints the number of packets sent. Runs in the namespace it is started in; sends only on that namespace's links.
import json
import sys

from scapy.all import ICMP, IP, UDP, Ether, Raw, conf, send  # noqa: E402
from scapy.layers.vxlan import VXLAN  # noqa: E402

conf.verb = 0
sent = 0
for spec in json.loads(sys.argv[1]):
    inner = IP(src=spec["innerSrc"], dst=spec["innerDst"], ttl=64) / ICMP(type=8, id=0x4242, seq=1) / Raw(b"forged" * 8)
    if spec["encap"] == "vxlan":
        frame = Ether(src=spec["srcMac"], dst=spec["dstMac"]) / inner
        packet = IP(src=spec["outerSrc"], dst=spec["outerDst"]) / UDP(sport=spec.get("sport", 40000), dport=spec["port"]) / VXLAN(flags=0x08, vni=spec.get("vni", 1)) / frame
    else:
        packet = IP(src=spec["outerSrc"], dst=spec["outerDst"], proto=4) / inner
    count = spec.get("count", 1)
    send(packet, count=count)
    sent += count
print(sent)
