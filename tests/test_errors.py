"""User-facing errors: one sentence of what, where and what to do, and a kind per family."""

from __future__ import annotations

import pytest

from upscale.errors import BundleError, CatalogError, DataError, RecipeError, RunDirError, UpscaleError


def test_the_message_joins_what_where_and_fix_as_sentences():
    err = UpscaleError("the file is missing.", where="recipe.yaml", fix="Create it.")
    assert err.message == "the file is missing (in recipe.yaml). Create it."
    assert str(err) == err.message and err.args == (err.message,)
    assert (err.what, err.where, err.fix) == ("the file is missing.", "recipe.yaml", "Create it.")


def test_where_and_fix_are_optional():
    assert UpscaleError("bad").message == "bad."
    assert UpscaleError("bad", fix="do this").message == "bad. do this."
    assert UpscaleError("bad", where="x").message == "bad (in x)."


@pytest.mark.parametrize(
    "cls, kind",
    [
        (UpscaleError, "error"),
        (RecipeError, "recipe error"),
        (CatalogError, "catalog error"),
        (DataError, "data error"),
        (RunDirError, "run directory error"),
        (BundleError, "bundle error"),
    ],
)
def test_every_family_is_an_upscale_error_with_its_kind(cls, kind):
    err = cls("what", where="where")
    assert cls.kind == err.kind == kind
    assert isinstance(err, UpscaleError) and isinstance(err, Exception)
    with pytest.raises(UpscaleError, match=r"^what \(in where\)\.$"):
        raise err


def test_families_do_not_catch_each_other():
    families = [RecipeError, CatalogError, DataError, RunDirError, BundleError]
    assert [[issubclass(a, b) for b in families] for a in families] == [[a is b for b in families] for a in families]
