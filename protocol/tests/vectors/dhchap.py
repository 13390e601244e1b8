#!/usr/bin/env python3
"""Independent DH-HMAC-CHAP computation (Python hashlib/hmac/pow) that
produced the known vector of protocol/tests/nvme_auth.rs. Run it to
regenerate; it shares no code with the Rust implementation."""
import hashlib, hmac, subprocess, sys

P2048 = int(sys.argv[1], 16) if len(sys.argv) > 1 else None
H = hashlib.sha384
host_key = bytes(range(32))          # DHHC-1:01 (transform SHA-256)
ctrl_key = bytes(range(32, 80))      # DHHC-1:02 (transform SHA-384)
hostnqn = b"nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001"
subnqn = b"nqn.2026-12.io.zctarget:vector"
x = int("11" * 32, 16)   # controller private exponent
y = int("22" * 32, 16)   # host private exponent
c1 = bytes([0xA0 + (i % 16) for i in range(48)])
c2 = bytes([0x50 + (i % 16) for i in range(48)])
s1, s2, tid = 0x01020304, 0x0BADF00D, 0x0042

def hm(h, k, *parts):
    return hmac.new(k, b"".join(parts), h).digest()

kh = hm(hashlib.sha256, host_key, hostnqn, b"NVMe-over-Fabrics")
kc = hm(hashlib.sha384, ctrl_key, subnqn, b"NVMe-over-Fabrics")
pub_c = pow(2, x, P2048).to_bytes(256, "big")
pub_h = pow(2, y, P2048).to_bytes(256, "big")
sk = pow(int.from_bytes(pub_h, "big"), x, P2048).to_bytes(256, "big")
assert sk == pow(int.from_bytes(pub_c, "big"), y, P2048).to_bytes(256, "big")
hk = H(sk).digest()
ca1 = hm(H, hk, c1)
ca2 = hm(H, hk, c2)
le = lambda v, n: v.to_bytes(n, "little")
r1 = hm(H, kh, ca1, le(s1, 4), le(tid, 2), b"\0", b"HostHost", hostnqn, b"\0", subnqn)
r2 = hm(H, kc, ca2, le(s2, 4), le(tid, 2), b"\0", b"Controller", subnqn, b"\0", hostnqn)
r1_null = hm(H, kh, c1, le(s1, 4), le(tid, 2), b"\0", b"HostHost", hostnqn, b"\0", subnqn)
print("pub_c_sha256", hashlib.sha256(pub_c).hexdigest())
print("session_sha256", hashlib.sha256(sk).hexdigest())
print("r1", r1.hex())
print("r2", r2.hex())
print("r1_null", r1_null.hex())
