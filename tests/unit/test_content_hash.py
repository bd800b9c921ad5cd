"""Content hashes are neutral in core; the stored form (meta) and the JCS
spelling (api/jcs) are each written once and agree with what the first
release stored and answered."""

from __future__ import annotations

import hashlib

from jointcloud.api.jcs.views import file_hash
from jointcloud.core.models import ContentHash
from jointcloud.core.multipart import composite_hash
from jointcloud.meta.rows import dump_hash, load_hash

SHA = hashlib.sha256(b"abc").hexdigest()


def test_stored_form_round_trips_and_matches_old_rows() -> None:
    full, comp, none = ContentHash(SHA), ContentHash(SHA, composite=True), ContentHash("")
    assert dump_hash(full) == "Full" + SHA.upper()  # what rows of earlier releases hold
    assert dump_hash(comp) == "Comp" + SHA.upper()
    assert dump_hash(none) == ""
    for h in (full, comp, none):
        assert load_hash(dump_hash(h)) == h


def test_jcs_spelling() -> None:
    assert file_hash(ContentHash(SHA)) == "Full" + SHA.upper()
    assert file_hash(ContentHash(SHA, composite=True)) == "Comp" + SHA.upper()
    assert file_hash(ContentHash("")) == ""


def test_composite_is_the_hash_of_the_part_digests() -> None:
    parts = [hashlib.sha256(p).hexdigest() for p in (b"a", b"b")]
    want = hashlib.sha256(b"".join(bytes.fromhex(p) for p in parts)).hexdigest()
    assert composite_hash(parts) == ContentHash(want, composite=True)
