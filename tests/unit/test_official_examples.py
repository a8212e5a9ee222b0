"""The official examples' absence: a skip with one line for a newcomer, a failure where they are expected."""

import pytest

from official_examples import require_examples


def test_absent_examples_skip_with_where_to_put_them(monkeypatch, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("EPR_FIXTURES", raising=False)

    with pytest.raises(pytest.skip.Exception) as skipped:
        require_examples(tmp_path / "ch-epr-fhir")

    assert "official examples not found" in str(skipped.value) and "set EPR_FIXTURES" in str(skipped.value)


@pytest.mark.parametrize("variable", ["CI", "EPR_FIXTURES"])
def test_absent_examples_fail_where_they_are_expected(monkeypatch, tmp_path, variable):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("EPR_FIXTURES", raising=False)
    monkeypatch.setenv(variable, "1")

    with pytest.raises(pytest.fail.Exception):
        require_examples(tmp_path, ("Bundle-BundleProvideDocument.json",))


def test_present_examples_are_returned(monkeypatch, tmp_path):
    (tmp_path / "a.json").write_text("{}")
    monkeypatch.setenv("CI", "1")

    assert require_examples(tmp_path, ("a.json",)) == tmp_path
