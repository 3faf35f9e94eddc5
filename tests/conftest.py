"""pytest configuration: the e2e tests' shared processes live in tests/e2e/conftest.py."""

import pytest


@pytest.fixture
def anyio_backend():
    """Async tests run on asyncio, as mitmproxy and the SDKs do."""
    return "asyncio"
