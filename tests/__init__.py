"""The test suite, a package so that `tests.fakes` and `tests.conftest` import under plain `pytest`."""
