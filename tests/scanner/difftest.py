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
and, per case, every import: the oracle's path c (oracle.py) loads the case
as if every import succeeded (find_class records the pair and returns a
stand-in) and lists every (module, name) find_class was asked for; the
scanner's collect mode (--collect --all) lists every import it reports.
Each asked pair must be matched by a distinct scanner import: one naming
it exactly (EXT1/2/4 with code C names (EXT_MODULE, "C"), the module the
oracle registers codes under), or, failing that, one with its module or
name unknown; a GLOBAL/INST line cut at PSCAN_NAME_MAX matches by prefix;
a FRAME-straddle report ends emulation and covers every pair after it.
Multiset inclusion, order not compared. The scanner's import count must
be at least the number of find_class calls.
It prints the counts and exits 1 on any false negative, broken invariant,
import name that differs from what find_class received, or asked pair the
scanner did not report. Failing cases are
written to $PSCAN_FAILURES (default /tmp/pscan-failures.txt) as hex lines:
add them to regressions.txt once understood.

--cases 1000000 is the "million-case" run (see README.md for its runtime).
"""
import argparse
import collections
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import corpus  # noqa: E402
import oracle  # noqa: E402


NAMING = ("GLOBAL", "INST", "STACK_GLOBAL")


def short(x, n=80):
    """repr of x, at most about n characters."""
    r = x if isinstance(x, str) else repr(x)
    return r if len(r) <= n else "%s...(%d chars)" % (r[:n], len(r))
EXTS = ("EXT1", "EXT2", "EXT4")


def match_pairs(asked, imps):
    """Match CPython's find_class pairs (path c) against the scanner's
    imports. Returns (exact, truncated, unknown, straddle, missing): how many
    asked pairs were matched by an exact name, by a cut GLOBAL/INST line's
    prefix, by an import with an unknown operand, covered by a
    FRAME-straddle (emulation stopped there, everything after is unknown),
    and the list of pairs nothing matched."""
    exact = collections.Counter()
    prefixes, unknown, straddle = [], 0, False
    for i in imps:
        if i.op == "FRAME-straddle":
            straddle = True
        elif i.op in EXTS:
            exact[(oracle.EXT_MODULE, str(i.ext_code).encode())] += 1
        elif i.op not in NAMING:
            continue  # PERSID/BINPERSID: persistent_load, not find_class
        elif i.unknown():
            unknown += 1
        elif i.truncated:
            prefixes.append((i.module, i.name))
        else:
            exact[(i.module, i.name)] += 1
    n_exact = n_trunc = n_unknown = n_straddle = 0
    rest = []
    for pr in asked:
        if exact[pr] > 0:
            exact[pr] -= 1
            n_exact += 1
        else:
            rest.append(pr)
    missing = []
    for m, n in rest:
        k = next((j for j, (pm, pn) in enumerate(prefixes)
                  if m.startswith(pm) and n.startswith(pn)), None)
        if k is not None:
            del prefixes[k]
            n_trunc += 1
        elif unknown > 0:
            unknown -= 1
            n_unknown += 1
        elif straddle:
            n_straddle += 1
        else:
            missing.append((m, n))
    return n_exact, n_trunc, n_unknown, n_straddle, missing


def compare(cases, scan, stock, orc):
    """Counts and failures for parallel lists of cases and results."""
    st = dict(cases=len(cases), dangerous=0, dangerous_stock=0, flagged=0, flagged_stock=0,
              fn=0, fn_stock=0, fp=0, fp_stock=0, mismatch=0, named=0, name_checked=0,
              name_diff=0, oracle_paths_differ=0, safe=0, safe_stock=0,
              c_cases=0, c_pairs=0, c_exact=0, c_truncated=0, c_unknown=0, c_straddle=0,
              c_missing=0, c_count_short=0, c_max_pairs=0, c_many=0, c_first_differs=0,
              c_scanner_imports=0)
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
        al = oracle.parse_all(s)
        if al is None:
            raise RuntimeError("scanner line without --all output: %s" % s[:200])
        outer, imps = al
        if first and o.a == "find_class" and first[0] in ("GLOBAL", "INST", "STACK_GLOBAL"):
            st["name_checked"] += 1
            if first[2] is not None and first[3] is not None:
                st["named"] += 1
                # A GLOBAL/INST line cut at PSCAN_NAME_MAX names a prefix.
                cut = bool(imps) and imps[0].truncated
                if ((first[2], first[3]) != (o.module, o.name) if not cut else
                        not (o.module.startswith(first[2]) and o.name.startswith(first[3]))):
                    st["name_diff"] += 1
                    fails.append((c, "names: scanner %s.%s, find_class got %s.%s"
                                  % tuple(short(x) for x in (first[2], first[3], o.module,
                                                             o.name))))
        # Every import: each pair find_class was asked for on the "every
        # import succeeds" path must be reported by collect mode.
        st["c_scanner_imports"] += outer
        # Sanity of the oracle: when path a's first event is find_class,
        # path c asked for the same pair first (nothing before it differs).
        if o.a == "find_class" and (not o.asked or o.asked[0] != (o.module, o.name)):
            st["c_first_differs"] += 1
            fails.append((c, "oracle: path a first asked %s.%s, path c %s"
                          % (short(o.module), short(o.name), short(o.asked[:1]))))
        if not o.asked:
            continue
        st["c_cases"] += 1
        st["c_pairs"] += len(o.asked)
        st["c_max_pairs"] = max(st["c_max_pairs"], len(o.asked))
        st["c_many"] += len(o.asked) > 100
        ex, tr, un, sd, missing = match_pairs(o.asked, imps)
        st["c_exact"] += ex
        st["c_truncated"] += tr
        st["c_unknown"] += un
        st["c_straddle"] += sd
        if outer < len(o.asked) and not sd:
            st["c_count_short"] += 1
            fails.append((c, "imports: scanner reported %d, find_class called %d times"
                          % (outer, len(o.asked))))
        if missing:
            st["c_missing"] += len(missing)
            fails.append((c, "pairs: find_class asked %s, not reported (scanner: %s)"
                          % (", ".join("%s.%s" % (short(m), short(n)) for m, n in missing[:4]),
                             short(", ".join(map(repr, imps[:8])) or "no import", 400))))
    return st, fails


def run(n, seed, procs=1, checks=2, quiet=False):
    t0 = time.time()
    cases = oracle.load_regressions() + corpus.build_corpus(n, seed)
    t1 = time.time()
    scan = oracle.run_scanner(cases, "--check", checks, "--collect", "--all", procs=procs)
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
        "every import (loads() as if each import succeeded): %d cases call find_class, "
        "%d pairs checked (up to %d in one case, %d cases > 100), scanner reported %d imports"
        % (st["c_cases"], st["c_pairs"], st["c_max_pairs"], st["c_many"],
           st["c_scanner_imports"]),
        "  pairs named exactly by the scanner %d, by a cut line's prefix %d, reported unknown %d, "
        "after a FRAME-straddle %d, MISSING %d; import count short %d; oracle path a/c first differ %d"
        % (st["c_exact"], st["c_truncated"], st["c_unknown"], st["c_straddle"], st["c_missing"],
           st["c_count_short"], st["c_first_differs"]),
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
                if k.endswith("_max_pairs"):
                    total[k] = max(total[k], v)
                elif isinstance(v, (int, float)) and not isinstance(v, bool):
                    total[k] = round(total[k] + v, 1) if isinstance(v, float) else total[k] + v
        done += n
        batch += 1
        print("... %d cases, false negatives %d/%d, mismatches %d, pairs %d missing %d" % (
            done, total["fn"], total["fn_stock"], total["mismatch"], total["c_pairs"],
            total["c_missing"]), flush=True)
    if allfails:
        path = os.environ.get("PSCAN_FAILURES", "/tmp/pscan-failures.txt")
        with open(path, "w") as f:
            for c, why in allfails:
                f.write("%s  # %s\n" % (c.hex() or "''", why))
        total["failures_file"] = path
    print(report(total))
    for c, why in allfails[:20]:
        print("FAIL", c[:200].hex(), why)
    bad = (total["fn"] + total["fn_stock"] + total["mismatch"] + total["name_diff"]
           + total["c_missing"] + total["c_count_short"] + total["c_first_differs"])
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
