#!/usr/bin/python3
"""The fanyi test runner: runs every test_* function of tests/test_*.py.

    /usr/bin/python3 tests/run_tests.py [NAME_FILTER...]

A test fails by raising, skips by raising Skip("reason"). The last line is
"N passed, N failed, N skipped"; the exit status is 1 if anything failed.
The C binaries under test come from $FANYI_BIN and $FANYI_BUILD (set by make).
"""

import importlib.util
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))

from helpers import Skip  # noqa: E402


def main(filters):
    passed = failed = skipped = 0
    failures = []
    for name in sorted(os.listdir(HERE)):
        if not (name.startswith("test_") and name.endswith(".py")):
            continue
        spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(HERE, name))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for fn_name in sorted(n for n in dir(module) if n.startswith("test_")):
            full = f"{name[:-3]}.{fn_name}"
            if filters and not any(f in full for f in filters):
                continue
            start = time.time()
            try:
                getattr(module, fn_name)()
            except Skip as s:
                skipped += 1
                print(f"skip {full}: {s}", flush=True)
                continue
            except Exception:  # noqa: BLE001 - a test failure of any kind
                failed += 1
                failures.append(full)
                print(f"FAIL {full}\n{traceback.format_exc()}", flush=True)
                continue
            passed += 1
            print(f"ok   {full} ({time.time() - start:.1f}s)", flush=True)
    if failures:
        print("failed: " + ", ".join(failures))
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
