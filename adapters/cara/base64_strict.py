"""Strict Base64 decoding of document bytes (ITI-65 Binary.data, HL7 v2 ED payloads), fast.

Why pybase64: a 50 KB document is ~67 KB of Base64, which pybase64 (SIMD) decodes tens of times faster
than the standard library (figures in bench/README.md) — on the bridge's hot path, under the one GIL.

Why the standard library stays: pybase64's `validate=True` is strict, and in one place stricter than
`base64.b64decode(validate=True)`: it refuses padding after a complete quantum (`AAAA=`), which the
standard library accepts. Everything it accepts, the standard library accepts with the same bytes
(tests/unit/adapters/test_base64_strict.py checks edge cases and random inputs). So pybase64 decodes,
and what it refuses goes to the reference decoder, which decides: the same data is accepted and
refused as before, with the same error, and only refused (or oddly padded) data pays the old cost.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

import pybase64


def b64decode_strict(data: str | bytes) -> bytes:
    """As `base64.b64decode(data, validate=True)`: characters outside the alphabet (whitespace
    included) are an error, not silently skipped. Raises binascii.Error or ValueError (non-ASCII)."""
    return _fast_or(_standard_strict, data)


def b64decode_strict_wrapped(data: str) -> bytes:
    """Strict Base64 in which whitespace between characters is allowed (a sender that wrapped its
    lines): the alphabet, padding only at the end. Raises binascii.Error or ValueError (non-ASCII)."""
    return _fast_or(_standard_strict_wrapped, data)


def _fast_or(reference: Callable[[str | bytes], bytes], data: str | bytes) -> bytes:
    try:
        return pybase64.b64decode(data, validate=True)
    except (ValueError, TypeError):  # binascii.Error is a ValueError
        return reference(data)


def _standard_strict(data: str | bytes) -> bytes:
    return base64.b64decode(data, validate=True)


def _standard_strict_wrapped(data: str | bytes) -> bytes:
    """The whitespace pass runs only when a strict decode refuses the data: on a 50 KB document it
    costs about as much as the decoding itself."""
    encoded = data.encode("ascii") if isinstance(data, str) else data
    try:
        return binascii.a2b_base64(encoded, strict_mode=True)
    except binascii.Error:
        return binascii.a2b_base64(b"".join(encoded.split()), strict_mode=True)
