"""Bencode decoding (BEP 3) for tracker replies: strict, with clear errors."""

from __future__ import annotations


class BencodeError(ValueError):
    pass


def decode(data: bytes):
    value, end = _decode(data, 0)
    if end != len(data):
        raise BencodeError(f"trailing data after offset {end}")
    return value


def _decode(data: bytes, i: int):
    if i >= len(data):
        raise BencodeError("truncated input")
    c = data[i : i + 1]
    if c == b"i":
        end = data.find(b"e", i)
        if end < 0:
            raise BencodeError("unterminated integer")
        text = data[i + 1 : end]
        if not text or not (text.lstrip(b"-").isdigit()):
            raise BencodeError(f"bad integer {text!r}")
        return int(text), end + 1
    if c == b"l":
        i += 1
        items = []
        while data[i : i + 1] != b"e":
            item, i = _decode(data, i)
            items.append(item)
        return items, i + 1
    if c == b"d":
        i += 1
        result = {}
        while data[i : i + 1] != b"e":
            key, i = _decode(data, i)
            if not isinstance(key, bytes):
                raise BencodeError("dictionary key is not a string")
            result[key], i = _decode(data, i)
        return result, i + 1
    if c.isdigit():
        colon = data.find(b":", i)
        if colon < 0 or not data[i:colon].isdigit():
            raise BencodeError("bad string length")
        n = int(data[i:colon])
        start = colon + 1
        if start + n > len(data):
            raise BencodeError("truncated string")
        return data[start : start + n], start + n
    raise BencodeError(f"unexpected byte {c!r} at offset {i}")
