"""Modules the attack payloads of gadgets.py import as stand-ins for an
allowed engine class (see shapes.py). Not an engine: nothing here is a fake
of SGLang, Sarathi-Serve or vLLM (those live in tests/e2e/engines/)."""
