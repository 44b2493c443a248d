"""Every repository path that the code, configs and docs name exists: a moved or deleted file cannot
leave a stale pointer behind (the text equivalent of tests/structure/test_layers.py's import check)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# A path below one of these folders (``ics_study/train/loop.py``, ``configs/model/``) must be tracked;
# a bare script or module name (``report_md.py``) must be some tracked file's name.
FOLDERS = ("ics_study", "scripts", "configs", "docs", "tests", ".ci")
NAMED = re.compile(r"(?<![\w./-])((?:" + "|".join(re.escape(f) for f in FOLDERS) + r")/[\w./-]*[\w/])")
BARE = re.compile(r"(?<![\w./-])([a-z_]\w*\.py)\b")
# names of files outside the repository: the shared CIFAR-10 builder beside the checkout
OUTSIDE = {"build.py"}
# files whose text names files that do not exist on purpose (the checks' own synthetic packages)
SKIP = {"tests/structure/test_layers.py", "tests/structure/test_paths.py"}
TEXT = re.compile(r"\.(py|md|yaml|yml|sh|toml|cfg|txt|ini)$|(^|/)Makefile$|^\.ci/")


def tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()


def stale(text: str, files: set[str]) -> list[str]:
    """The repository paths and module names in ``text`` that name nothing in ``files``."""
    folders = {str(p) for f in files for p in Path(f).parents}
    names = {Path(f).name for f in files}
    out = [m.group(1).rstrip("/.") for m in NAMED.finditer(text)]
    out = [p for p in out if not any(c in p for c in "*{<") and p not in files and p not in folders]
    return out + [n for n in BARE.findall(text) if n not in names and n not in OUTSIDE]


def test_every_path_named_in_code_configs_and_docs_exists():
    files = tracked()
    if not files:  # not a git checkout (an sdist): nothing to compare against
        return
    readable = [f for f in files if TEXT.search(f) and f not in SKIP
                and (not f.startswith("results/") or f.endswith("NOTES.md"))]  # reports name run folders
    wrong = [f"{f}: {p}" for f in readable for p in stale((REPO / f).read_text(errors="ignore"), set(files))]
    assert not wrong, "named but not in the repository:\n" + "\n".join(wrong)


def test_the_path_check_sees_a_stale_path_and_a_stale_module_name():
    files = {"ics_study/train/loop.py", "scripts/bench.py", "README.md"}
    text = ("see ics_study/train/loop.py and scripts/, run scripts/bench.py; ics_study/loop.py moved, "
            "bench_probes.py is gone, loop.py stays; ../shared/data/cifar10/build.py; configs/{group}/x.yaml")
    assert stale(text, files) == ["ics_study/loop.py", "bench_probes.py"]
