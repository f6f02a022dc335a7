"""The Open Inference Protocol over HTTP against a real uvicorn process, with Triton's own HTTP client
(`tritonclient.http`): every real scan in JSON and binary form gets the labels of ``POST /segment``
byte for byte; metadata and readiness through the client's calls; bad requests get a clear 4xx in
the protocol's shape; a property test finds no input that makes the route fail."""

from __future__ import annotations

import json
import struct

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seg3d.points import PointFormat
from seg3d.scans import real_scans
from tests.serve.conftest import MAX_POINTS, Server

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
from tritonclient.utils import InferenceServerException  # noqa: E402

SCANS = real_scans()
FORMAT = {"nuscenes": PointFormat.NUSCENES, "kitti": PointFormat.KITTI, "semantickitti": PointFormat.KITTI}
OCTET = {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}


@pytest.fixture(scope="module")
def client(server: Server) -> httpclient.InferenceServerClient:
    triton = httpclient.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=120)
    yield triton
    triton.close()


def _records(path, fmt: PointFormat) -> np.ndarray:
    return np.fromfile(path, dtype="<f4").reshape(-1, fmt.columns)


def _segment(server: Server, records: np.ndarray, fmt: PointFormat) -> bytes:
    response = httpx.post(
        f"{server.url}/segment",
        params={"format": fmt.value},
        content=records.tobytes(),
        headers=OCTET,
        timeout=120,
    )
    assert response.status_code == 200, response.text[:300]
    return response.content


def _points_input(records: np.ndarray, binary: bool) -> httpclient.InferInput:
    tensor = httpclient.InferInput("points", list(records.shape), "FP32")
    tensor.set_data_from_numpy(records, binary_data=binary)
    return tensor


@pytest.mark.skipif(not SCANS, reason="real scans not found")
@pytest.mark.parametrize("scan", SCANS, ids=lambda s: s.name)
def test_every_real_scan_json_and_binary_equals_segment(
    scan, server: Server, client: httpclient.InferenceServerClient
) -> None:
    fmt = FORMAT[scan.kind]
    records = _records(scan.path, fmt)
    expected = _segment(server, records, fmt)
    for binary in (True, False):
        outputs = [httpclient.InferRequestedOutput("labels", binary_data=binary)]
        result = client.infer(
            "tiny",
            [_points_input(records, binary)],
            outputs=outputs,
            request_id="r7",
            parameters={"format": fmt.value},  # the request's parameter (the client sets no input's)
        )
        labels = result.as_numpy("labels")
        assert labels.dtype == np.uint8 and labels.shape == (records.shape[0],)
        assert labels.tobytes() == expected, f"binary={binary}"
        response = result.get_response()
        assert response["model_name"] == "tiny" and response["id"] == "r7"
        assert response["parameters"]["format"] == fmt.value
    # the format is taken from the columns when not named: 5 nuscenes, 4 kitti
    unnamed = client.infer("tiny", [_points_input(records, True)], model_version="1")
    assert unnamed.as_numpy("labels").tobytes() == expected
    assert unnamed.as_numpy("logits") is None  # logits only when asked for


def test_logits_when_asked_agree_with_the_labels(
    server: Server, client: httpclient.InferenceServerClient
) -> None:
    rng = np.random.default_rng(3)
    records = np.c_[
        rng.uniform(-60, 60, (3000, 2)), rng.uniform(-3, 3, 3000), rng.uniform(0, 255, 3000), np.zeros(3000)
    ]
    records = records.astype(np.float32)
    records[:50, :2] = 500.0  # outside the crop: they take a nearest in-crop point's row of both
    outputs = [
        httpclient.InferRequestedOutput("labels"),
        httpclient.InferRequestedOutput("logits", binary_data=False),
    ]
    result = client.infer("tiny", [_points_input(records, True)], outputs=outputs)
    labels, logits = result.as_numpy("labels"), result.as_numpy("logits")
    metadata = client.get_model_metadata("tiny")
    classes = metadata["outputs"][1]["shape"][1]
    assert logits.shape == (3000, classes) and logits.dtype == np.float32
    masked = logits.copy()
    masked[:, 0] = -np.inf  # the ignore class is never a label
    np.testing.assert_array_equal(masked.argmax(1), labels)
    assert labels.tobytes() == _segment(server, records, PointFormat.NUSCENES)


def test_metadata_and_readiness_through_the_client(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny") and client.is_model_ready("tiny", "1")
    assert not client.is_model_ready("other") and not client.is_model_ready("tiny", "2")
    server_metadata = client.get_server_metadata()
    assert "binary_tensor_data" in server_metadata["extensions"]
    metadata = client.get_model_metadata("tiny", "1")
    assert metadata["name"] == "tiny" and metadata["versions"] == ["1"]
    assert metadata["inputs"][0] | {"parameters": None} == {
        "name": "points",
        "datatype": "FP32",
        "shape": [-1, -1],
        "parameters": None,
    }
    assert [(o["name"], o["datatype"]) for o in metadata["outputs"]] == [
        ("labels", "UINT8"),
        ("logits", "FP32"),
    ]
    assert metadata["outputs"][1]["shape"] == [-1, len(metadata["classes"])]
    with pytest.raises(InferenceServerException) as unknown:
        client.get_model_metadata("tiny", "2")
    assert unknown.value.status() == "404" and "no version '2'" in unknown.value.message()


def _refused(client: httpclient.InferenceServerClient, status: str, phrase: str, *inputs, **kwargs) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(kwargs.pop("model", "tiny"), list(inputs), **kwargs)
    assert caught.value.status() == status, caught.value
    assert phrase in caught.value.message(), caught.value


def test_bad_requests_through_the_client(server: Server, client: httpclient.InferenceServerClient) -> None:
    good = np.zeros((10, 5), np.float32)
    wide = httpclient.InferInput("points", [10, 5], "FP64")
    wide.set_data_from_numpy(good.astype(np.float64))
    _refused(client, "400", "must be FP32", wide)
    flat = httpclient.InferInput("points", [50], "FP32")
    flat.set_data_from_numpy(good.reshape(-1))
    _refused(client, "400", "shape [N, C]", flat)
    seven = np.zeros((10, 7), np.float32)
    _refused(client, "400", "3, 4 or 5", _points_input(seven, True))
    nan = good.copy()
    nan[4, 2] = np.nan
    _refused(client, "422", "NaN", _points_input(nan, True))
    _refused(client, "422", "NaN", _points_input(nan, False))
    big = np.zeros((MAX_POINTS + 1, 4), np.float32)
    _refused(client, "413", "exceed", _points_input(big, True))
    _refused(client, "404", "not served", _points_input(good, True), model="other")
    _refused(client, "404", "no version", _points_input(good, True), model_version="7")
    _refused(client, "422", "unknown point format", _points_input(good, True), parameters={"format": "las"})
    assert client.is_server_live() and server.process.poll() is None


def test_malformed_binary_bodies_get_400_in_the_protocol_shape(server: Server) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "points",
                    "datatype": "FP32",
                    "shape": [2, 5],
                    "parameters": {"binary_data_size": 40},
                }
            ]
        }
    ).encode()
    body = header + np.zeros(10, np.float32).tobytes()
    url = f"{server.url}/v2/models/tiny/infer"
    cases = {
        str(len(body) + 1): "bad_header_length",  # longer than the body
        "abc": "bad_header_length",
        str(len(header) - 3): "bad_json",  # the JSON cut short
        str(len(header) + 4): "bad_json",  # 4 tensor bytes read as JSON
    }
    with httpx.Client(timeout=60) as http:
        for length, code in cases.items():
            response = http.post(url, content=body, headers={"Inference-Header-Content-Length": length})
            assert response.status_code == 400, (length, response.text)
            payload = response.json()
            assert payload["code"] == code and isinstance(payload["error"], str) and payload["error"]
        declared = header.replace(b'"binary_data_size": 40', b'"binary_data_size": 44')
        response = http.post(
            url,
            content=declared + body[len(header) :],
            headers={"Inference-Header-Content-Length": str(len(declared))},
        )
        assert response.status_code == 400 and response.json()["code"] == "bad_binary_size"  # 40 sent
        ok = http.post(url, content=body, headers={"Inference-Header-Content-Length": str(len(header))})
        assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
        assert ok.json()["outputs"][0]["shape"] == [2]
        encoded = http.post(url, content=body, headers={"Content-Encoding": "br"})
        assert encoded.status_code == 415 and encoded.json()["code"] == "unsupported_encoding"


def test_auth_applies_to_the_protocol(tiny_export) -> None:
    from serve.local import start_local_server

    local = start_local_server(  # the token only from the environment: a flag would show in `ps`
        tiny_export, "--backend", "onnxruntime", "--log-level", "warning", env={"SEG_AUTH_TOKEN": "s3cret"}
    )
    try:
        triton = httpclient.InferenceServerClient(local.url.removeprefix("http://"))
        records = np.zeros((5, 5), np.float32)
        with pytest.raises(InferenceServerException) as refused:
            triton.infer("tiny", [_points_input(records, True)])
        assert refused.value.status() == "401"
        assert triton.is_server_live()  # probes stay open
        headers = {"Authorization": "Bearer s3cret"}
        result = triton.infer("tiny", [_points_input(records, True)], headers=headers)
        assert result.as_numpy("labels").shape == (5,)
        assert triton.get_model_metadata("tiny", headers=headers)["name"] == "tiny"
        triton.close()
    finally:
        local.stop()


# --- property test: nothing a client sends makes the route fail -------------------------------------

_SHAPES = st.one_of(
    st.lists(st.integers(-3, 12), max_size=3), st.just("x"), st.lists(st.text(max_size=2), max_size=2)
)
_TENSORS = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["points", "cloud", ""]),
        "datatype": st.sampled_from(["FP32", "FP64", "UINT8", "BYTES", "fp32"]),
        "shape": _SHAPES,
        "data": st.one_of(
            st.lists(st.floats(width=32), max_size=40),
            st.lists(st.lists(st.floats(width=32), max_size=6), max_size=8),
            st.text(max_size=5),
            st.none(),
        ),
        "parameters": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "binary_data_size": st.one_of(st.integers(-4, 200), st.text(max_size=3)),
                    "format": st.one_of(st.sampled_from([f.value for f in PointFormat]), st.text(max_size=6)),
                },
            ),
            st.just([]),
        ),
    },
)
_REQUESTS = st.fixed_dictionaries(
    {"inputs": st.one_of(st.lists(_TENSORS, max_size=2), st.just({}))},
    optional={
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["labels", "logits", "x"])},
                optional={"parameters": st.fixed_dictionaries({"binary_data": st.booleans()})},
            ),
            max_size=3,
        ),
        "id": st.one_of(st.text(max_size=4), st.integers()),
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": st.booleans()}),
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    request=_REQUESTS,
    tail=st.one_of(
        st.binary(max_size=200),
        st.lists(st.floats(width=32), max_size=50).map(lambda xs: struct.pack(f"<{len(xs)}f", *xs)),
    ),
    length_shift=st.one_of(st.none(), st.integers(-10, 10)),
    path=st.sampled_from(
        ["/v2/models/tiny/infer", "/v2/models/tiny/versions/1/infer", "/v2/models/tiny/versions/x/infer"]
    ),
)
def test_no_request_makes_the_infer_route_fail(server: Server, request, tail, length_shift, path) -> None:
    header = json.dumps(request).encode()
    headers = {}
    body = header
    if length_shift is not None:  # the binary form: a header length, right or off by a few bytes
        body = header + tail
        headers["Inference-Header-Content-Length"] = str(max(0, len(header) + length_shift))
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.post(path, content=body, headers=headers)
    assert response.status_code in (200, 400, 404, 413, 415, 422), (response.status_code, response.text[:300])
    if response.status_code != 200:
        payload = response.json()
        assert isinstance(payload["error"], str) and payload["code"]
    assert server.process.poll() is None
