"""pytest configuration: the e2e tests' shared processes live in tests/e2e/conftest.py."""
