"""Shrink a case that fails the every-import check (a pair find_class was
asked for that the scanner did not report) to a short vector for
regressions.txt.

    /usr/bin/python3 tests/scanner/minimise.py HEX

Greedy: each round tries removing every run of 64, 16, 4, 2 and 1 bytes
(all candidates of a round go through the oracle and the scanner in one
batch) and keeps the shortest candidate that still misses a pair. Prints
the result as hex, then what CPython asked and what the scanner reported.
"""
import sys
import os

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import difftest  # noqa: E402
import oracle  # noqa: E402


def missing(cases):
    orc = oracle.run_oracle(cases, procs=2)
    scan = oracle.run_scanner(cases, "--collect", "--all", procs=2)
    out = []
    for o, s in zip(orc, scan):
        al = oracle.parse_all(s)
        out.append(bool(o.asked) and bool(difftest.match_pairs(o.asked, al[1])[4]))
    return out


def minimise(case):
    if not missing([case])[0]:
        raise SystemExit("the case does not fail the every-import check")
    for step in (64, 16, 4, 2, 1):
        while True:
            cands = [case[:i] + case[i + step:] for i in range(0, len(case), max(1, step // 2))]
            cands = [c for c in cands if c and len(c) < len(case)]
            bad = [c for c, m in zip(cands, missing(cands)) if m]
            if not bad:
                break
            case = min(bad, key=len)
    return case


def main():
    case = minimise(bytes.fromhex(sys.argv[1]))
    o = oracle.run_oracle([case])[0]
    s = oracle.run_scanner([case], "--collect", "--all")[0]
    print(case.hex())
    print("find_class asked:", o.asked, "(path c: %s)" % o.c)
    print("scanner:", s)


if __name__ == "__main__":
    main()
