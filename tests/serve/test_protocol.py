"""The Open Inference Protocol codec (`serve.protocol`) on hand-built bodies, without a server: the
JSON and binary forms of a request give the same call, each malformed part is refused with the
protocol's status and a message naming it, and responses split back into their tensors."""

from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pytest

from seg3d.points import PointFormat
from serve.errors import ServiceError
from serve.protocol import (
    HEADER_LENGTH,
    LABELS,
    LOGITS,
    InferCall,
    check_model,
    decode_content,
    parse_rest_infer,
    rest_infer_response,
)

POINTS = np.arange(15, dtype=np.float32).reshape(3, 5)


def _json_body(data: object = None, **tensor: object) -> bytes:
    entry = {"name": "points", "datatype": "FP32", "shape": [3, 5], "data": POINTS.tolist()}
    entry.update(tensor)
    if data is not None:
        entry["data"] = data
    return json.dumps({"inputs": [entry]}).encode()


def _binary_body(raw: bytes, size: int | None = None, **request: object) -> tuple[bytes, str]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "points",
                    "datatype": "FP32",
                    "shape": [3, 5],
                    "parameters": {"binary_data_size": len(raw) if size is None else size},
                }
            ],
            **request,
        }
    ).encode()
    return header + raw, str(len(header))


def _refused(status: int, code: str, *args: object, **kwargs: object) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        parse_rest_infer(*args, **kwargs)  # type: ignore[arg-type]
    assert (caught.value.status, caught.value.code) == (status, code), caught.value.message
    return caught.value


def test_json_nested_flat_and_binary_forms_give_the_same_call() -> None:
    nested = parse_rest_infer(_json_body(), None, 100)
    flat = parse_rest_infer(_json_body(POINTS.reshape(-1).tolist()), None, 100)
    body, length = _binary_body(POINTS.tobytes())
    binary = parse_rest_infer(body, length, 100)
    assert nested.body == flat.body == binary.body == POINTS.astype("<f4").tobytes()
    assert nested.fmt is flat.fmt is binary.fmt is PointFormat.NUSCENES  # 5 columns
    assert nested.outputs == {LABELS: False}


def test_the_format_comes_from_the_input_the_request_the_query_or_the_columns() -> None:
    four = np.zeros((3, 4), np.float32).tolist()
    by_columns = parse_rest_infer(_json_body(four, shape=[3, 4]), None, 100)
    assert by_columns.fmt is PointFormat.KITTI
    named = parse_rest_infer(_json_body(four, shape=[3, 4], parameters={"format": "xyzi"}), None, 100)
    assert named.fmt is PointFormat.XYZI
    queried = parse_rest_infer(_json_body(four, shape=[3, 4]), None, 100, request_format="xyzi")
    assert queried.fmt is PointFormat.XYZI
    error = _refused(
        400, "bad_shape", _json_body(four, shape=[3, 4], parameters={"format": "nuscenes"}), None, 100
    )
    assert "format nuscenes has 5" in error.message
    _refused(422, "unknown_format", _json_body(parameters={"format": "las"}), None, 100)
    for file_format in ("pcd", "ply"):  # files with a header, which tensor rows cannot be
        error = _refused(422, "unknown_format", _json_body(parameters={"format": file_format}), None, 100)
        assert "file format, not tensor rows" in error.message and "nuscenes" in error.message
    _refused(400, "bad_shape", _json_body(np.zeros((3, 7)).tolist(), shape=[3, 7]), None, 100)


def test_malformed_requests_are_refused_with_the_part_named() -> None:
    _refused(400, "bad_json", b"{not json", None, 100)
    _refused(400, "bad_json", b"[1, 2]", None, 100)
    _refused(400, "bad_inputs", json.dumps({"inputs": []}).encode(), None, 100)
    _refused(400, "bad_inputs", _json_body(name="cloud"), None, 100)
    _refused(400, "bad_datatype", _json_body(datatype="FP64"), None, 100)
    _refused(400, "bad_shape", _json_body(shape=[15]), None, 100)
    _refused(400, "bad_shape", _json_body(shape=[3, -5]), None, 100)
    _refused(400, "bad_size", _json_body(POINTS.reshape(-1)[:14].tolist()), None, 100)
    _refused(400, "bad_data", _json_body([["a"] * 5] * 3), None, 100)
    _refused(413, "too_many_points", _json_body(), None, 2)
    outputs = json.loads(_json_body())
    outputs["outputs"] = [{"name": "scores"}]
    _refused(400, "unknown_output", json.dumps(outputs).encode(), None, 100)


def test_binary_header_lengths_and_sizes_must_add_up() -> None:
    raw = POINTS.tobytes()
    body, length = _binary_body(raw)
    too_long = _refused(400, "bad_header_length", body, str(len(body) + 1), 100)
    assert f"{len(body) + 1} but the body has {len(body)} bytes" in too_long.message
    _refused(400, "bad_header_length", body, "-3", 100)
    _refused(400, "bad_header_length", body, "twelve", 100)
    _refused(400, "bad_json", body, str(int(length) - 1), 100)  # the header cut short
    _refused(400, "bad_binary_size", *_binary_body(raw, size=len(raw) + 4), 100)
    short, short_length = _binary_body(raw[:-4])  # declared as sent, but the shape needs 4 bytes more
    _refused(400, "bad_size", short, short_length, 100)
    _refused(400, "bad_binary_size", _json_body() + b"trailing", str(len(_json_body())), 100)
    body, length = _binary_body(raw)
    _refused(400, "bad_datatype", body.replace(b'"FP32"', b'"UINT8"'), str(int(length) + 1), 100)


def test_content_encodings_and_their_limits() -> None:
    body = _json_body()
    assert decode_content(gzip.compress(body), "gzip", 10_000) == body
    assert decode_content(zlib.compress(body), "deflate", 10_000) == body
    assert decode_content(body, None, 10_000) == body
    with pytest.raises(ServiceError) as bomb:
        decode_content(gzip.compress(b"0" * 100_000), "gzip", 10_000)
    assert bomb.value.status == 413
    with pytest.raises(ServiceError) as unknown:
        decode_content(body, "br", 10_000)
    assert unknown.value.status == 415
    with pytest.raises(ServiceError) as broken:
        decode_content(b"not gzip", "gzip", 10_000)
    assert broken.value.status == 400


def test_responses_json_and_binary_split_back_into_their_tensors() -> None:
    labels = np.array([3, 0, 16], np.uint8)
    logits = np.arange(3 * 17, dtype=np.float32).reshape(3, 17)
    as_json = InferCall(b"", PointFormat.NUSCENES, {LABELS: False}, "req-1")
    content, headers = rest_infer_response(as_json, "demo", labels, logits)
    assert headers == {"Content-Type": "application/json"}
    payload = json.loads(content)
    assert payload["id"] == "req-1" and payload["model_version"] == "1"
    assert payload["outputs"] == [{"name": "labels", "datatype": "UINT8", "shape": [3], "data": [3, 0, 16]}]

    both = InferCall(b"", PointFormat.NUSCENES, {LABELS: True, LOGITS: True})
    content, headers = rest_infer_response(both, "demo", labels, logits)
    length = int(headers[HEADER_LENGTH])
    header = json.loads(content[:length])
    (label_entry, logit_entry) = header["outputs"]
    assert label_entry["parameters"] == {"binary_data_size": 3}
    assert content[length : length + 3] == labels.tobytes()
    assert logit_entry["shape"] == [3, 17] and logit_entry["parameters"] == {"binary_data_size": 3 * 17 * 4}
    assert logit_entry.get("data") is None
    assert content[length + 3 :] == logits.astype("<f4").tobytes()


def test_unknown_models_and_versions_name_what_is_served() -> None:
    check_model("demo", None, "demo")
    check_model("demo", "1", "demo")
    with pytest.raises(ServiceError) as other:
        check_model("other", None, "demo")
    assert (other.value.status, other.value.code, other.value.details) == (
        404,
        "unknown_model",
        {"served": ["demo"]},
    )
    with pytest.raises(ServiceError) as version:
        check_model("demo", "2", "demo")
    assert (version.value.status, version.value.code) == (404, "unknown_version")
