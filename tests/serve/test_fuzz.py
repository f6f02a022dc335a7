"""Property test against the real server: whatever arrives, the answer is never a 5xx."""

from __future__ import annotations

import struct

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serve.conftest import Server

CONTENT_TYPES = st.one_of(
    st.sampled_from(
        ["application/octet-stream", "multipart/form-data", "text/plain", "application/json", ""]
    ),
    # header values are ASCII without surrounding blanks on the wire (the client refuses others)
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(str.strip),
)
FORMATS = st.one_of(st.sampled_from(["nuscenes", "kitti", "xyzi"]), st.text(max_size=12))
ACCEPTS = st.sampled_from(["application/json", "application/octet-stream", "*/*", "text/html", ""])
BODIES = st.one_of(
    st.binary(max_size=4096),
    st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), max_size=400).map(
        lambda xs: struct.pack(f"<{len(xs)}f", *xs)
    ),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, content_type=CONTENT_TYPES, fmt=FORMATS, accept=ACCEPTS, multipart=st.booleans())
def test_no_input_makes_the_server_fail(server: Server, body, content_type, fmt, accept, multipart) -> None:
    headers = {"Accept": accept} if accept else {}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        if multipart:
            response = client.post(
                "/segment", params={"format": fmt}, files={"file": ("x.bin", body)}, headers=headers
            )
        else:
            if content_type:
                headers["Content-Type"] = content_type
            response = client.post("/segment", params={"format": fmt}, content=body, headers=headers)
    assert response.status_code in (200, 400, 413, 415, 422), (response.status_code, response.text[:300])
    if response.status_code != 200:
        assert response.json()["error"]["code"]
    assert server.process.poll() is None
