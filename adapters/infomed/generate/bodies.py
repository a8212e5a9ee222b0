"""Document bodies: real minimal PDFs and CDA-CH XML, made cheaply.

Why a shared random pool: a 100,000-document export is ~5 GB, and drawing fresh random bytes for each
document would dominate the generator. Each body is a valid PDF (or CDA) whose stream is a slice of
one seeded pool, with the document's uniqueId in its text, so every body is distinct (its own SHA-1).
"""

from __future__ import annotations

import math
import random

MEAN_BYTES = 50_000
MIN_BYTES = 2_000
MAX_BYTES = 5_000_000
_SIGMA = 1.0
_MU = math.log(MEAN_BYTES) - _SIGMA ** 2 / 2  # lognormal with mean MEAN_BYTES


class Bodies:
    def __init__(self, seed: int, pool_bytes: int = 8 * 1024 * 1024):
        self._random = random.Random(seed)
        self._pool = self._random.randbytes(pool_bytes + MAX_BYTES)

    def size(self) -> int:
        return int(min(MAX_BYTES, max(MIN_BYTES, self._random.lognormvariate(_MU, _SIGMA))))

    def _slice(self, length: int) -> bytes:
        start = self._random.randrange(0, len(self._pool) - length)
        return self._pool[start:start + length]

    def pdf(self, unique_id: str, title: str, size: int) -> bytes:
        text = f"BT /F1 12 Tf 72 720 Td ({title} {unique_id}) Tj ET\n".encode("latin-1", "replace")
        head = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
        objects = [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            None,  # the content stream, sized to fill the body
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
        # The padding is an unreferenced stream object: viewers ignore it, sizes vary like real scans.
        padding = max(0, size - 600 - len(text))
        objects[3] = b"<< /Length %d >>\nstream\n" % len(text) + text + b"endstream"
        objects.append(b"<< /Length %d >>\nstream\n" % padding + self._slice(padding) + b"\nendstream")
        out = bytearray(head)
        offsets = []
        for number, body in enumerate(objects, start=1):
            offsets.append(len(out))
            out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
        xref = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
        out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
        return bytes(out)

    def cda(self, unique_id: str, title: str, size: int) -> bytes:
        root = unique_id.removeprefix("urn:oid:")
        head = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3">'
                f'<templateId root="2.16.756.5.30.1.1.10.1.3"/><id root="{root}"/><title>{title}</title>'
                '<component><nonXMLBody><text mediaType="application/octet-stream" representation="B64">').encode()
        tail = b"</text></nonXMLBody></component></ClinicalDocument>\n"
        import base64

        raw = self._slice(max(0, (size - len(head) - len(tail)) * 3 // 4))
        return head + base64.b64encode(raw) + tail
