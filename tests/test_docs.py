"""The manual pages render without a warning; the README names the commands it promises."""

import os
import shutil
import subprocess

from helpers import ROOT

PAGES = [os.path.join(ROOT, "man", "fanyi.1"), os.path.join(ROOT, "man", "fanyi-model.5"),
         os.path.join(ROOT, "man", "fanyi.3")]


def test_man_pages_lint_clean():
    assert shutil.which("mandoc"), "mandoc is missing (make test installs it: apt-get install mandoc)"
    p = subprocess.run(["mandoc", "-Tlint", "-W", "warning"] + PAGES, capture_output=True, text=True)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), p.stdout + p.stderr
    for page in PAGES:
        p = subprocess.run(["groff", "-man", "-ww", "-z", page], capture_output=True, text=True)
        assert p.returncode == 0 and not p.stderr.strip(), p.stderr


def test_man_page_documents_every_option():
    help_text = subprocess.run([os.path.join(ROOT, os.environ.get("FANYI_BIN", "fanyi")), "--help"],
                               capture_output=True, text=True).stdout
    page = open(PAGES[0]).read().replace("\\-", "-")
    options = [w.rstrip(",") for w in help_text.split() if w.startswith("--")]
    missing = [o for o in options if o.split("=")[0] not in page]
    assert not missing, f"fanyi.1 does not document {missing}"


def test_readme_quick_start():
    text = open(os.path.join(ROOT, "README.md")).read()
    assert "make run" in text and "make test" in text
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert "make test" in ci


def test_api_man_page_documents_every_function():
    import re
    header = open(os.path.join(ROOT, "include", "fanyi.h")).read()
    functions = set(re.findall(r"FANYI_API [^(]*?\b(fanyi_\w+)\(", header))
    page = open(PAGES[2]).read()
    assert len(functions) >= 19
    missing = sorted(f for f in functions if f not in page)
    assert not missing, f"fanyi.3 does not document {missing}"
