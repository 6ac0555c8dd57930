#!/usr/bin/env python3
"""Print an HS256 JWT for the load tools' full-policy gateway: issuer
https://idp.load, audience sluice-load, subject load-agent, tenant acme,
role agent, valid for a day, signed with $SLUICE_LOAD_HS."""
import base64, hashlib, hmac, json, os, time

b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = {"iss": "https://idp.load", "aud": "sluice-load", "sub": "load-agent",
          "tenant": "acme", "roles": ["agent"], "exp": int(time.time()) + 86400}
body = b64(json.dumps(claims).encode())
sig = b64(hmac.new(os.environ["SLUICE_LOAD_HS"].encode(), head + b"." + body, hashlib.sha256).digest())
print((head + b"." + body + b"." + sig).decode())
