"""Differential test: the msgpack walker (src/msgpack_scan.c) against
msgpack-python, at CI size.

The generator and the rules live in tests/scanner/msgpack_difftest.py (its
docstring and tests/scanner/README.md have the details and the large run).
Here: MPSCAN_ORACLE_CASES frames (default 30,000): no split variance, no
frame msgpack-python decodes that the walker refuses or reports with other
payloads, no NOT_MSGPACK for a frame any unpackb options accept.

Run:  /usr/bin/python3 -m pytest -q -s tests/e2e/test_msgpack_oracle.py
Env:  MPSCAN_DRIVER=<path to mpscan_driver>, else
      $ZMTPFW_BUILD/tests/mpscan_driver (ZMTPFW_BUILD defaults to
      <repo>/build); skipped when missing unless ZMTPFW_REQUIRE=1.
"""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "scanner"))

import msgpack_difftest  # noqa: E402

SEED = 20261204

pytestmark = [pytest.mark.nobinary, pytest.mark.timeout_s(240)]


def test_msgpack_differential():
    drv = msgpack_difftest.driver_path()
    if not os.path.exists(drv):
        if os.environ.get("ZMTPFW_REQUIRE") == "1":
            pytest.fail("mpscan_driver not built: %s" % drv)
        pytest.skip("mpscan_driver not built: %s" % drv)
    n = int(os.environ.get("MPSCAN_ORACLE_CASES", 30000))
    st, fails, rep = msgpack_difftest.run(n, SEED)
    print("\n".join(rep))
    assert not fails, fails[:10]
    # The corpus must exercise every outcome.
    assert st["decoder accepts (defaults)"] > n // 4
    assert st["both refuse"] > n // 4
    assert st["payloads in accepted frames"] > n
    assert st["walker TOO_DEEP, decoder accepts"] > 0
    assert st["walker more lenient"] > 0
