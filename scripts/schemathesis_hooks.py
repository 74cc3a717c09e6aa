"""schemathesis hooks for scripts/schemathesis (loaded through SCHEMATHESIS_HOOKS).

The tus PATCH body (`application/offset+octet-stream`, SPEC §12) is raw bytes: schemathesis has no
serializer for that media type, so it gets one here. Whatever value was generated for the body
(bytes, text, a list of byte values, anything else) is sent as bytes.
"""

import json

import schemathesis


@schemathesis.serializer("application/offset+octet-stream")
def octet_stream(ctx, value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return bytes(v % 256 for v in value)
    return json.dumps(value).encode()
