"""Property test against the real server: whatever arrives, the answer is never a 5xx."""

from __future__ import annotations

import struct

import httpx
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seg3d.points import PointFormat
from tests.serve.conftest import MAX_POINTS, Server

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


# Finite but extreme: float32's largest and smallest magnitudes, and ordinary values between.
EXTREMES = [3.4e38, -3.4e38, 3.4028235e38, -3.4028235e38, 1e30, -1e30, 1e-45, -1e-45, 1e-38, 0.0, -0.0]
ORDINARY = [1.0, 255.0, -255.0, 1e6, -1e6, 30.0, -30.0, 0.5]
EXTREME = st.one_of(
    st.sampled_from([*EXTREMES, *ORDINARY]), st.floats(width=32, allow_nan=False, allow_infinity=False)
)


@st.composite
def extreme_clouds(draw: st.DrawFn) -> tuple[PointFormat, np.ndarray]:
    """A few distinct extreme rows, repeated up to ``MAX_POINTS`` times (huge counts of one point)."""
    fmt = draw(st.sampled_from(PointFormat.raw()))  # rows of float32 columns: the raw layouts
    rows = draw(
        st.lists(st.lists(EXTREME, min_size=fmt.columns, max_size=fmt.columns), min_size=1, max_size=12)
    )
    repeat = draw(st.sampled_from([1, 1, 1, 2, 1_000, MAX_POINTS]))
    return fmt, np.tile(np.asarray(rows, "<f4"), (max(1, min(repeat, MAX_POINTS // len(rows))), 1))


def _overflows(fmt: PointFormat, cloud: np.ndarray) -> bool:
    """Whether the intensity overflows float32 when scaled to the model's 0-255 (kitti: ×255)."""
    if fmt.intensity_max is None or fmt.intensity_max == 255.0:
        return False
    with np.errstate(over="ignore"):
        scaled = cloud[:, 3] * np.float32(255.0 / fmt.intensity_max)
    return bool(np.isinf(scaled).any())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=extreme_clouds(), accept=st.sampled_from(["application/json", "application/octet-stream"]))
def test_extreme_finite_values_in_every_column_and_format(server: Server, case, accept: str) -> None:
    fmt, cloud = case
    with httpx.Client(base_url=server.url, timeout=120) as client:
        response = client.post(
            "/segment",
            params={"format": fmt.value},
            content=cloud.tobytes(),
            headers={"Content-Type": "application/octet-stream", "Accept": accept},
        )
    if _overflows(fmt, cloud):
        assert response.status_code == 422, (response.status_code, response.text[:300])
        assert response.json()["error"]["code"] == "intensity_overflow"
        assert "overflows float32" in response.json()["error"]["message"]
    else:
        assert response.status_code == 200, (fmt, response.status_code, response.text[:300])
        if accept == "application/json":
            labels = np.asarray(response.json()["labels"])
        else:
            labels = np.frombuffer(response.content, np.uint8)
        assert labels.shape == (cloud.shape[0],) and labels.min() >= 1
    assert server.process.poll() is None


def test_kitti_reflectance_that_overflows_is_refused_not_a_500(server: Server) -> None:
    """The known bug: reflectance 1e38 × 255 is Inf after conversion; it was a 500."""
    cloud = np.array([[1.0, 2.0, 0.5, 0.3], [3.0, 1.0, 0.2, 1e38]], "<f4")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        response = client.post(
            "/segment?format=kitti",
            content=cloud.tobytes(),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 422 and response.json()["error"]["code"] == "intensity_overflow"
        message = response.json()["error"]["message"]
        assert "1 of 2 point rows" in message and "overflows float32" in message
        metrics = client.get("/metrics").text
    assert 'seg_errors_total{code="intensity_overflow",status="422"}' in metrics
