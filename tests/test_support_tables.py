"""The support tables in the docs are the ones the adapter registry generates."""

from __future__ import annotations

from pathlib import Path

import pytest

from videolens.adapters.protocol import registered_adapters
from videolens.errors import InputError
from videolens.testing import support_table
from videolens.testing.support import DOCUMENTS, find_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("document", "view"), list(DOCUMENTS.items()))
def test_the_document_table_is_the_generated_one(document, view):
    text = (ROOT / document).read_text()
    start, end = find_table(text, view)
    assert text[start:end] == support_table(view), f"{document} is stale: run python -m videolens.testing.support"


def test_every_registered_family_has_one_row_naming_its_class():
    rows = support_table("models").splitlines()[2:]
    classes = [row.split(" | ")[1].split("`")[1] for row in rows]
    assert sorted(classes) == sorted(cls.architectures[0] for cls in registered_adapters())


def test_unknown_view_raises():
    with pytest.raises(InputError, match="models"):
        support_table("nope")
