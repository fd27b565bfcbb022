"""The bad-input corpus, written once per test session."""

import pytest

from tests.reliability.corpus import write_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))
