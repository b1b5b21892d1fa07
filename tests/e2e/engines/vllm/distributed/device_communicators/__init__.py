"""Fake vLLM package for zmtpfw tests (see tests/e2e/engines/README.md)."""
