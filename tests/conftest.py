"""Shared pytest set-up: every test writes under a scratch GCMA_OUT unless it
is an end-to-end test, which uses the real out/ folder (tests/e2e/conftest.py)."""
