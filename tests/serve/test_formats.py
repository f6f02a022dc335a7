"""Point formats through the real server: ``xyz`` clouds (no intensity) and the default format."""

from __future__ import annotations

import httpx
import numpy as np

from tests.serve.conftest import Server

OCTET = {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}


def _cloud(n: int = 5_000) -> np.ndarray:
    g = np.random.default_rng(3)
    return np.concatenate([g.uniform(-40, 40, (n, 2)), g.uniform(-2, 2, (n, 1))], axis=1).astype("<f4")


def test_xyz_is_one_point_per_three_floats_with_intensity_zero(server: Server) -> None:
    xyz = _cloud()
    with_zero = np.concatenate([xyz, np.zeros((xyz.shape[0], 1), "<f4")], axis=1)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        plain = client.post("/segment", params={"format": "xyz"}, content=xyz.tobytes(), headers=OCTET)
        explicit = client.post(
            "/segment", params={"format": "xyzi"}, content=with_zero.tobytes(), headers=OCTET
        )
    assert plain.status_code == explicit.status_code == 200
    assert int(plain.headers["x-num-points"]) == xyz.shape[0]
    np.testing.assert_array_equal(
        np.frombuffer(plain.content, np.uint8), np.frombuffer(explicit.content, np.uint8)
    )


def test_format_defaults_to_nuscenes(server: Server) -> None:
    cloud = np.concatenate([_cloud(1_000), np.zeros((1_000, 2), "<f4")], axis=1)  # 5 columns
    with httpx.Client(base_url=server.url, timeout=60) as client:
        default = client.post("/segment", content=cloud.tobytes(), headers=OCTET)
        named = client.post("/segment", params={"format": "nuscenes"}, content=cloud.tobytes(), headers=OCTET)
        schema = client.get("/openapi.json").json()
    assert default.status_code == 200 and default.content == named.content
    parameter = next(p for p in schema["paths"]["/segment"]["post"]["parameters"] if p["name"] == "format")
    assert parameter["schema"]["default"] == "nuscenes"
