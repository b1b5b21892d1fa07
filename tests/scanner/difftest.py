"""Differential test: the C scanner against CPython on a generated corpus.

    /usr/bin/python3 tests/scanner/difftest.py [--cases N] [--seed S] [--procs P]

For every case (corpus.build_corpus plus the permanent vectors of
regressions.txt) it runs:
  - the oracle (oracle.py): what CPython's unpickler reaches;
  - the scanner, default options, with --check (lazy init against a
    poisoned state, byte by byte, random splits, PROTO-prefix equivalence of
    the first-byte fast path, collect mode agreeing with flag-and-stop) and
    --collect (first import and its names);
  - the scanner with PSCAN_STOCK (options 7) against the stock oracle.
It prints the counts and exits 1 on any false negative, broken invariant,
or import name that differs from what find_class received. Failing cases are
written to $PSCAN_FAILURES (default /tmp/pscan-failures.txt) as hex lines:
add them to regressions.txt once understood.

--cases 1000000 is the "million-case" run (see README.md for its runtime).
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import corpus  # noqa: E402
import oracle  # noqa: E402


def compare(cases, scan, stock, orc):
    """Counts and failures for parallel lists of cases and results."""
    st = dict(cases=len(cases), dangerous=0, dangerous_stock=0, flagged=0, flagged_stock=0,
              fn=0, fn_stock=0, fp=0, fp_stock=0, mismatch=0, named=0, name_checked=0,
              name_diff=0, oracle_paths_differ=0, safe=0, safe_stock=0)
    fails = []
    for c, s, k, o in zip(cases, scan, stock, orc):
        if s.startswith("MISMATCH") or k.startswith("MISMATCH"):
            st["mismatch"] += 1
            fails.append((c, "invariant: %s / %s" % (s, k)))
            continue
        flagged = s.startswith("PICKLE ")
        flagged_stock = k.startswith("PICKLE ")
        st["flagged"] += flagged
        st["flagged_stock"] += flagged_stock
        if (o.a == "find_class") != (o.b == "find_class"):
            st["oracle_paths_differ"] += 1
        if o.dangerous():
            st["dangerous"] += 1
            if not flagged:
                st["fn"] += 1
                fails.append((c, "false negative: %s | oracle %s %s %s" % (s, o.a, o.b, o.f)))
        else:
            st["safe"] += 1
            st["fp"] += flagged
        if o.dangerous(stock=True):
            st["dangerous_stock"] += 1
            if not flagged_stock:
                st["fn_stock"] += 1
                fails.append((c, "false negative (stock): %s | oracle %s %s" % (k, o.b, o.g)))
        else:
            st["safe_stock"] += 1
            st["fp_stock"] += flagged_stock
        # Names: when CPython's first event is find_class and the scanner's
        # first import names it, they must agree.
        first = oracle.parse_first(s)
        if first and o.a == "find_class" and first[0] in ("GLOBAL", "INST", "STACK_GLOBAL"):
            st["name_checked"] += 1
            if first[2] is not None and first[3] is not None:
                st["named"] += 1
                if (first[2], first[3]) != (o.module, o.name):
                    st["name_diff"] += 1
                    fails.append((c, "names: scanner %r.%r, find_class got %r.%r"
                                  % (first[2], first[3], o.module, o.name)))
    return st, fails


def run(n, seed, procs=1, checks=2, quiet=False):
    t0 = time.time()
    cases = oracle.load_regressions() + corpus.build_corpus(n, seed)
    t1 = time.time()
    scan = oracle.run_scanner(cases, "--check", checks, "--collect", procs=procs)
    stock = oracle.run_scanner(cases, "--opts", 7, procs=procs)
    t2 = time.time()
    orc = oracle.run_oracle(cases, procs=procs)
    t3 = time.time()
    st, fails = compare(cases, scan, stock, orc)
    st.update(gen_s=round(t1 - t0, 1), scanner_s=round(t2 - t1, 1), oracle_s=round(t3 - t2, 1))
    if fails:
        path = os.environ.get("PSCAN_FAILURES", "/tmp/pscan-failures.txt")
        with open(path, "w") as f:
            for c, why in fails:
                f.write("%s  # %s\n" % (c.hex() or "''", why))
        st["failures_file"] = path
    if not quiet:
        print(report(st))
        for c, why in fails[:20]:
            print("FAIL", c[:200].hex(), why)
    return st, fails


def report(st):
    r = lambda a, b: "%.4f%%" % (100.0 * a / b) if b else "n/a"
    return "\n".join([
        "cases: %(cases)d (generation %(gen_s)ss, scanner %(scanner_s)ss, oracle %(oracle_s)ss)" % st,
        "default policy: dangerous %d, flagged %d, false negatives %d, false positives %d (%s of safe)"
        % (st["dangerous"], st["flagged"], st["fn"], st["fp"], r(st["fp"], st["safe"])),
        "stock loads():  dangerous %d, flagged %d, false negatives %d, false positives %d (%s of safe)"
        % (st["dangerous_stock"], st["flagged_stock"], st["fn_stock"], st["fp_stock"],
           r(st["fp_stock"], st["safe_stock"])),
        "invariant mismatches (splits, poisoned init, fast path, collect mode): %d" % st["mismatch"],
        "import names: %d first imports checked, %d named by the scanner, %d differ from find_class"
        % (st["name_checked"], st["named"], st["name_diff"]),
        "oracle cross-check (subclass vs audit hook disagree on find_class): %d"
        % st["oracle_paths_differ"],
    ])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=1000000)
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--checks", type=int, default=2, help="random split sets per case")
    ap.add_argument("--batch", type=int, default=100000, help="cases per batch (memory bound)")
    a = ap.parse_args()
    total, allfails = None, []
    done = 0
    batch = 0
    while done < a.cases:
        n = min(a.batch, a.cases - done)
        st, fails = run(n, a.seed + batch, a.procs, a.checks, quiet=True)
        allfails += fails
        if total is None:
            total = st
        else:
            for k, v in st.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    total[k] = round(total[k] + v, 1) if isinstance(v, float) else total[k] + v
        done += n
        batch += 1
        print("... %d cases, false negatives %d/%d, mismatches %d" % (
            done, total["fn"], total["fn_stock"], total["mismatch"]), flush=True)
    if allfails:
        path = os.environ.get("PSCAN_FAILURES", "/tmp/pscan-failures.txt")
        with open(path, "w") as f:
            for c, why in allfails:
                f.write("%s  # %s\n" % (c.hex() or "''", why))
        total["failures_file"] = path
    print(report(total))
    for c, why in allfails[:20]:
        print("FAIL", c[:200].hex(), why)
    bad = total["fn"] + total["fn_stock"] + total["mismatch"] + total["name_diff"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
