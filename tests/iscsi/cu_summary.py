#!/usr/bin/env python3
"""Classifies each iscsi-test-cu test as passed, skipped or failed.

CUnit reports skipped tests as passed; a test is counted as skipped here
when its own output carries a [SKIPPED] marker and it did not fail.
Usage: cu_summary.py LOG... [--list]  → prints per-class counts (and names)
over every log (a test run in several invocations counts once).
"""
import re
import sys

def classify(path):
    results = {}
    suite, test, text = None, None, []

    def close():
        if test is None:
            return
        body = "".join(text)
        # CUnit's verdict starts a line ("passed" / "FAILED"); "[FAILED]"
        # inside a line is a diagnostic the test printed (often about an
        # error it expected). The test's own output ends at its verdict;
        # what follows on the same line comes from libiscsi's teardown for
        # the next test.
        verdict = re.search(r"(?m)^(passed|FAILED)", body)
        if verdict is None:
            kind = "failed"  # no verdict: crashed or aborted mid-test
        elif verdict.group(1) == "FAILED":
            kind = "failed"
        elif "[SKIPPED]" in body[: verdict.end()]:
            kind = "skipped"
        else:
            kind = "passed"
        results[f"{suite}.{test}"] = kind

    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"^Suite: (\S+)", line)
            if m:
                close()
                suite, test, text = m.group(1), None, []
                continue
            m = re.match(r"^\s+Test: (\S+) \.\.\.(.*)", line, re.S)
            if m:
                close()
                test, text = m.group(1), [m.group(2)]
                continue
            if line.startswith("Run Summary"):
                close()
                test = None
                break
            if test is not None:
                text.append(line)
    return results

def main():
    results = {}
    for path in (a for a in sys.argv[1:] if not a.startswith("--")):
        results.update(classify(path))
    counts = {k: sum(1 for v in results.values() if v == k) for k in ("passed", "skipped", "failed")}
    if "--list" in sys.argv:
        for name, kind in sorted(results.items()):
            print(f"{kind:8} {name}")
    print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")

if __name__ == "__main__":
    main()
