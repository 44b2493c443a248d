"""The README's TensorBoard command, tested in the real clients: the TensorBoard server's HTTP API
(every step of train/loss, a custom-scalars chart with a line per run, every recorded histogram
step, the hparams) and headless Chromium (the dashboards render drawn lines)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ics_study.analysis import board
from ics_study.train import train
from tests.conftest import REPO, TINY, compose
from tests.helpers.browser import chromium, coloured_pixels, screenshot

pytestmark = pytest.mark.slow
MODELS = ("vgg_bn", "vgg_bn_noise")


def readme_command() -> list[str]:
    """The TensorBoard command exactly as the README prints it."""
    text = (REPO / "README.md").read_text()
    found = re.findall(r"`(tensorboard --logdir [^`]+)`", text)
    assert found, "the README gives no `tensorboard --logdir ...` command"
    return shlex.split(found[0])


def test_the_readme_prints_the_flags_the_code_uses():
    cmd = readme_command()
    assert cmd[3:] == list(board.FLAGS) and "scalars=0" not in " ".join(cmd)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("board")
    for model in MODELS:
        train(compose(TINY + [f"model={model}", "probe.tb_every=1"]), logdir / model)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = readme_command()
    cmd[2] = str(logdir)  # the README's flags, this test's logdir
    exe = shutil.which("tensorboard") or str(Path(sys.executable).parent / "tensorboard")
    proc = subprocess.Popen([exe, *cmd[1:], "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:  # until the server is up and has read both runs
            try:
                if set(MODELS) <= set(get(url, "/data/runs")):
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"tensorboard exited: {proc.stderr.read()[-2000:]}")
            time.sleep(1)
        else:
            pytest.fail("tensorboard did not list the runs within 90 s")
        time.sleep(3)  # the loader reads each run's events once more after listing it
        yield url, logdir
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def get(url: str, path: str, **query):
    q = f"?{urllib.parse.urlencode(query)}" if query else ""
    with urllib.request.urlopen(url + path + q, timeout=30) as r:
        return json.loads(r.read())


def test_server_serves_every_scalar_step(server):
    url, _ = server
    for run in MODELS:
        points = get(url, "/data/plugin/scalars/scalars", run=run, tag="train/loss")
        assert [p[1] for p in points] == list(range(1, 13)), run  # [wall_time, step, value] for every step
        assert [p[1] for p in get(url, "/data/plugin/scalars/scalars", run=run, tag="test/acc")] == [6, 12]


def test_server_serves_custom_scalars_for_each_run(server):
    url, _ = server
    layout = get(url, "/data/plugin/custom_scalars/layout")
    charts = [c for cat in layout["category"] for c in cat["chart"]]
    chart = next(c for c in charts if c["title"] == "layer #1" and "mean" in c["multiline"]["tag"][0])
    for run in MODELS:
        out = get(url, "/data/plugin/custom_scalars/scalars", run=run, tag=chart["multiline"]["tag"][0])
        series = list(out["tag_to_events"].values())
        assert out["regex_valid"] and series and [p[1] for p in series[0]] == list(range(1, 13)), run


def test_server_serves_every_histogram_step(server):
    url, _ = server
    tags = get(url, "/data/plugin/histograms/tags")
    for run in MODELS:
        tag = sorted(tags[run])[0]
        assert tag.startswith("activations/layer01/")
        hist = get(url, "/data/plugin/histograms/histograms", run=run, tag=tag)
        assert [h[1] for h in hist] == [1, 4, 8, 12], run  # [wall_time, step, [[left, right, count], ...]]
        assert sum(b[2] for b in hist[0][2]) == 32 * 32 * 32  # N*H*W values of the unit at layer #1


def test_server_serves_the_hparams(server):
    url, _ = server
    data = json.dumps({"experimentName": ""}).encode()
    req = urllib.request.Request(url + "/data/plugin/hparams/experiment", data=data,
                                 headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"})
    with urllib.request.urlopen(req, timeout=30) as r:
        experiment = json.loads(r.read())
    names = {h["name"] for h in experiment["hparamInfos"]}
    assert {"model", "lr", "seed", "norm"} <= names
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert "hparam/final/test_acc" in metrics


def test_browser_shows_drawn_scalar_and_histogram_charts(server, tmp_path):
    url, _ = server
    chromium()
    shots = {}
    for name, fragment in (("scalars", "#scalars&tagFilter=train%2Floss"),
                           ("histograms", "#histograms&tagFilter=layer01%2Fch")):
        shots[name] = screenshot(f"{url}/{fragment}", tmp_path / f"{name}.png")
        non_white, _ = coloured_pixels(shots[name], (0, 120, 1400, 1000))  # below TensorBoard's orange bar
        # the first chart's area, right of the sidebar (its orange controls would count): the drawn lines
        _, saturated = coloured_pixels(shots[name], (380, 120, 760, 450))
        print(f"{name}: {non_white:.1%} non-white, {saturated} saturated pixels in the first chart ({shots[name]})")
        assert non_white > 0.02, f"{name}: the page is blank"
        assert saturated > 500, f"{name}: no drawn lines in the chart area"
