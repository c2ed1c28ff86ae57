"""Which files an ONNX model reads besides itself, found without onnxruntime or the onnx package.

A bundle handed to you may be hostile: its graph could name external data at ``../../etc/shadow``
or ``/dev/zero``. The runtime reads every external-data location from the protobuf and refuses
any that leaves the bundle before a session is created. The reader walks protobuf's wire format
(varint keys, length-delimited fields) over just the fields that can hold tensors.
"""

from __future__ import annotations

from pathlib import Path

# field numbers from onnx.proto3
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_ATTRIBUTE = 5
_FUNCTION_NODE = 7
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL_DATA = 13
_ENTRY_KEY, _ENTRY_VALUE = 1, 2


class ProtobufError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ProtobufError("truncated varint")
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i
        shift += 7


def _fields(buf: memoryview):
    """(field number, value) for each field; value is a memoryview for length-delimited fields, else None."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(buf, i)
            yield number, None
        elif wire == 1:
            i += 8
            yield number, None
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > len(buf):
                raise ProtobufError("length-delimited field runs past the end")
            yield number, buf[i : i + size]
            i += size
        elif wire == 5:
            i += 4
            yield number, None
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    if i != len(buf):
        raise ProtobufError("truncated field")


def _tensor(buf: memoryview, out: set[str]) -> None:
    for number, value in _fields(buf):
        if number == _TENSOR_EXTERNAL_DATA and value is not None:
            entry = dict(_fields(value))
            key, location = entry.get(_ENTRY_KEY), entry.get(_ENTRY_VALUE)
            if key is not None and bytes(key) == b"location" and location is not None:
                out.add(bytes(location).decode("utf-8", errors="replace"))


def _sparse(buf: memoryview, out: set[str]) -> None:
    for number, value in _fields(buf):
        if number in (_SPARSE_VALUES, _SPARSE_INDICES) and value is not None:
            _tensor(value, out)


def _node(buf: memoryview, out: set[str]) -> None:
    for number, attr in _fields(buf):
        if number != _NODE_ATTRIBUTE or attr is None:
            continue
        for field, value in _fields(attr):
            if value is None:
                continue
            if field in (_ATTR_T, _ATTR_TENSORS):
                _tensor(value, out)
            elif field in (_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS):
                _sparse(value, out)
            elif field in (_ATTR_G, _ATTR_GRAPHS):
                _graph(value, out)


def _graph(buf: memoryview, out: set[str]) -> None:
    for number, value in _fields(buf):
        if value is None:
            continue
        if number == _GRAPH_NODE:
            _node(value, out)
        elif number == _GRAPH_INITIALIZER:
            _tensor(value, out)
        elif number == _GRAPH_SPARSE_INITIALIZER:
            _sparse(value, out)


def external_data_locations(model_path: str | Path) -> set[str]:
    """Every external-data location the model names (as written in it, not resolved)."""
    buf = memoryview(Path(model_path).read_bytes())
    out: set[str] = set()
    for number, value in _fields(buf):
        if value is None:
            continue
        if number == _MODEL_GRAPH:
            _graph(value, out)
        elif number == _MODEL_FUNCTIONS:
            for field, node in _fields(value):
                if field == _FUNCTION_NODE and node is not None:
                    _node(node, out)
    return out
