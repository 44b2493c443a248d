"""The committed reference report.html, rendered in headless Chromium: the claims table has one row
per claim, every figure image loaded, and nothing on the page points off it."""

from __future__ import annotations

import json
import re
import subprocess

import pandas as pd
import pytest

from tests.conftest import REPO
from tests.helpers.browser import chromium, coloured_pixels, screenshot

pytestmark = pytest.mark.slow
REFERENCE = REPO / "results" / "reference"
CHECK = """<script>
window.addEventListener('load', () => {
  const rows = document.querySelectorAll('#claims + div table tbody tr').length;
  const images = [...document.images].map(i => [i.alt, i.complete, i.naturalWidth]);
  const outside = [...document.querySelectorAll('[href],[src]')]
    .map(e => e.getAttribute('href') || e.getAttribute('src'))
    .filter(u => !u.startsWith('#') && !u.startsWith('data:'));
  const out = document.createElement('pre');
  out.id = 'check-result';
  out.textContent = JSON.stringify({rows, images, outside});
  document.body.appendChild(out);
});
</script>"""


def test_reference_report_renders_whole_in_a_browser(tmp_path):
    page = REFERENCE / "report.html"
    assert page.exists(), "results/reference/report.html is not committed (scripts/reproduce.sh writes it)"
    probe = tmp_path / "report.html"
    probe.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    dom = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
                          probe.as_uri()], check=True, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="check-result">(.*?)</pre>', dom, re.S)
    assert found, "the check script did not run"
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    claims = pd.read_csv(REFERENCE / "claims.csv")
    paper = claims[claims.kind == "paper"] if "kind" in claims else claims  # checks sit in a table of their own
    assert result["rows"] == len(paper) > 0
    assert result["images"] and all(complete and width > 0 for _, complete, width in result["images"]), result["images"]
    figures = {p.stem for p in REFERENCE.glob("fig*.png")}
    assert {alt for alt, _, _ in result["images"]} == figures  # every committed figure is on the page
    assert result["outside"] == []  # self-contained: only in-page anchors and embedded data
    shot = screenshot(page.as_uri(), tmp_path / "report.png", size=(1366, 900), budget_ms=3000)
    non_white, saturated = coloured_pixels(shot)
    assert non_white > 0.05 and saturated > 200  # text and the colour-coded verdicts drawn


def test_the_readmes_verdict_table_is_the_committed_claims():
    """The README's table of the paper's claims counts the committed claims.csv, figure by figure."""
    readme = (REPO / "README.md").read_text()
    head = "| figure | paper's claims | reproduced | not reproduced | inconclusive | not testable at this scale |"
    assert head in readme
    rows = readme.split(head, 1)[1].split("\n\n", 1)[0].strip().splitlines()[1:]  # below the |---| line
    table = {r.split("|")[1].strip(): [int(x) for x in r.split("|")[2:-1]] for r in rows}
    claims = pd.read_csv(REFERENCE / "claims.csv")
    claims = claims[claims.kind == "paper"].assign(v=lambda c: c.verdict.str.replace(r" \(.*", "", regex=True))
    verdicts = ["reproduced", "not reproduced", "inconclusive", "not testable at this scale"]
    expected = {f: [len(g)] + [int((g.v == v).sum()) for v in verdicts] for f, g in claims.groupby("figure")}
    assert table == expected
