"""Figures and report from a tiny synthetic sweep made here: figure objects and numbers checked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ics_study.analysis.figures import FIGURES, make_figures
from ics_study.analysis.figures.style import RC
from ics_study.analysis.report import make_report
from ics_study.analysis.runs import find_runs
from ics_study.train import train
from tests.conftest import REPO, TINY16, compose, run_cli

# slow: the sweep behind these tests and the figure files take ~2 min; `make test-all` (CI) runs them
pytestmark = pytest.mark.slow

SWEEP = [("vgg", 0.1, 0), ("vgg", 0.1, 1), ("vgg_bn", 0.1, 0), ("vgg_bn", 0.1, 1), ("vgg_bn_noise", 0.1, 0),
         ("vgg_bn_noise", 0.1, 1), ("vgg", 0.5, 0), ("vgg_bn", 0.5, 0), ("vgg_noise", 0.1, 0)]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    for i, (model, lr, seed) in enumerate(SWEEP):
        measured = ["ics.enabled=true", "ics.every=4", "landscape.enabled=true", "landscape.every=4",
                    "probe.points=[pre_relu,pre_norm]"] if lr == 0.1 else []
        train(compose([*TINY16, f"model={model}", f"optim.lr={lr}", f"seed={seed}", *measured]), root / f"{i}_{model}")
    return root


def test_runs_are_found_and_grouped(sweep):
    runs = find_runs([sweep])
    assert len(runs) == len(SWEEP)
    assert sorted(set(runs.table.variant)) == ["vgg", "vgg_bn", "vgg_bn_noise", "vgg_noise"]
    acc = runs.metric("train/acc")
    assert set(acc.columns) >= {"variant", "lr", "seed", "step", "value"} and len(acc) == 12 * len(SWEEP)


def test_figure_objects(sweep):
    import matplotlib.pyplot as plt

    runs = find_runs([sweep])
    with plt.rc_context(RC):
        fig1 = FIGURES["fig1"](runs)
        train_ax = fig1.axes[0]
        assert fig1.axes[1].get_ylabel() == "test accuracy"
        assert train_ax.get_xlabel() == "steps" and "training accuracy" in train_ax.get_ylabel()
        assert len(train_ax.get_lines()) == 4  # (standard, BN) x (lr 0.1, 0.5)
        assert len(fig1.legends) == 1 and not any(ax.get_legend() for ax in fig1.axes)  # inside, it covered curves
        legend = [t.get_text() for t in fig1.legends[0].get_texts()]
        assert "Standard, lr 0.1 (2 seeds)" in legend and "Standard + BatchNorm, lr 0.5" in legend
        # 2 accuracy panels + 2 layers x (standard, BN's output, BN's input: the runs recorded pre_norm)
        ridges = [ax for ax in fig1.axes if ax.patches]
        assert len(fig1.axes) == 8 and len(ridges) == 6
        assert [ax.get_title() for ax in ridges] == [
            "Standard, layer #3", "Standard + BatchNorm, layer #3", "Standard + BatchNorm, layer #3, before the norm",
            "Standard, layer #11", "Standard + BatchNorm, layer #11", "Standard + BatchNorm, layer #11, before the norm"]
        assert all(len(ax.patches) == 4 for ax in ridges)  # histograms at steps 1, 4, 8, 12
        for row in (ridges[:3], ridges[3:]):  # one value axis per layer: widths compare by eye
            assert len({ax.get_xlim() for ax in row}) == 1
        bn_output, bn_input = ridges[1].patches[0].get_xy(), ridges[2].patches[0].get_xy()
        assert not np.array_equal(bn_output, bn_input)  # two points of one run, not one drawn twice
        assert "pre_norm (before the norm" in fig1._suptitle.get_text()
        fig2 = FIGURES["fig2"](runs)
        acc = [ax for ax in fig2.axes if "accuracy" in ax.get_ylabel()]
        assert len(acc) == 1 and len(acc[0].get_lines()) == 4  # the three networks and the noise-only control
        assert len(fig2.legends) == 1 and not any(ax.get_legend() for ax in fig2.axes)
        assert "Standard + noise, no BatchNorm" in [t.get_text() for t in fig2.legends[0].get_texts()]
        ridges = [ax for ax in fig2.axes if ax.patches]
        assert len(ridges) == 9  # 3 layers x 3 networks
        for row in (ridges[0:3], ridges[3:6], ridges[6:9]):  # one value axis per layer: widths compare by eye
            assert len({ax.get_xlim() for ax in row}) == 1
        assert "noisy BN" in fig2._suptitle.get_text() and "despite" not in fig2._suptitle.get_text()
        fig3 = FIGURES["fig3"](runs)
        assert fig3.axes[0].get_yscale() == "log" and len(fig3.axes[0].get_lines()) == 3
        assert len(fig3.legends) == 1 and not any(ax.get_legend() for ax in fig3.axes)  # inside, it covered layer #5
        fig4 = FIGURES["fig4"](runs)
        assert len(fig4.axes[0].collections) == 3 and "smoothness" in fig4.axes[2].get_ylabel()
        assert len(fig4.legends) == 1 and not any(ax.get_legend() for ax in fig4.axes)  # inside, it hid the bands
        fig8 = FIGURES["fig8"](runs)
        assert len(fig8.axes) == 12 and all(len(ax.get_lines()) == 3 for ax in fig8.axes)
        plt.close("all")


def test_figures_command_writes_files_and_skips_missing_with_a_line(sweep, tmp_path):
    messages = []
    written = make_figures([sweep], tmp_path, ("png", "pdf"), log=messages.append)
    assert set(written) == {"fig1", "fig2", "fig3", "fig4", "fig8"}
    assert (tmp_path / "fig2.pdf").read_bytes().startswith(b"%PDF")
    assert "skipped fig_lp: needs runs of vgg_lp1/vgg_lp2/vgg_lpinf (experiment=lp_norms)" in messages
    assert any(m.startswith("skipped fig_dln") for m in messages)
    # a sweep without the ICS measurement skips Figure 3 with its reason
    no_ics = [p for p in sweep.iterdir() if "_vgg" in p.name and p.name.startswith(("6_", "7_"))]
    messages.clear()
    make_figures(no_ics, tmp_path / "b", ("png",), log=messages.append)
    assert "skipped fig3: needs runs with ics.enabled=true (experiment=fig3)" in messages


def test_same_runs_give_byte_identical_figure_files(sweep, tmp_path):
    for out in ("a", "b"):
        make_figures([sweep], tmp_path / out, ("png", "pdf", "svg"), only=("fig8",), log=lambda m: None)
    for fmt in ("png", "pdf", "svg"):  # no creation date, no random SVG ids: a rerun leaves git clean
        assert (tmp_path / "a" / f"fig8.{fmt}").read_bytes() == (tmp_path / "b" / f"fig8.{fmt}").read_bytes()
    assert b"CreationDate" not in (tmp_path / "a" / "fig8.pdf").read_bytes()


def test_fig8_legend_sits_outside_the_panels(sweep):
    import matplotlib.pyplot as plt

    with plt.rc_context(RC):
        fig = FIGURES["fig8"](find_runs([sweep]))
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 3  # one line per network
    assert not any(ax.get_legend() for ax in fig.axes)  # inside a panel it hid the curves
    plt.close(fig)


@pytest.mark.parametrize("name", ["fig2", "fig8"])
def test_every_title_fits_inside_its_figure(sweep, name):
    """Fig 2's one-line title was wider than the figure: the saved file cut it at both sides."""
    import matplotlib.pyplot as plt

    with plt.rc_context(RC):
        fig = FIGURES[name](find_runs([sweep]))
        fig.canvas.draw()
        title = fig._suptitle.get_window_extent()
        width = fig.bbox.width
    plt.close(fig)
    assert 0 <= title.x0 and title.x1 <= width, (title.x0, title.x1, width)


def test_report_numbers_equal_a_direct_computation(sweep, tmp_path):
    res, claims = make_report([sweep], tmp_path)
    runs = find_runs([sweep])
    bn = runs.table[(runs.table.variant == "vgg_bn") & (runs.table.lr == 0.1)]
    row = res[(res.variant == "vgg_bn") & (res.lr == 0.1)].iloc[0]
    assert row.test_acc_mean == pytest.approx(bn.final_test_acc.mean())
    assert row.test_acc_std == pytest.approx(bn.final_test_acc.std(ddof=0))
    finals = []
    for path in bn.path:
        m = pd.read_parquet(f"{path}/metrics")
        a = m[m.metric == "train/acc"]
        finals.append(a[a.step > 12 * 0.95].value.mean())
    assert row.train_acc_mean == pytest.approx(np.mean(finals))
    assert row.seeds == 2 and row.diverged == 0
    text = (tmp_path / "report.md").read_text()
    assert "| vgg_bn | 0.1 | 2 |" in text and "## The paper's claims" in text
    # 2 seeds a side: at most "consistent (2 seeds)"; single runs at lr 0.5: "(1 seed)"
    assert claims.verdict.str.match(r"^((in)?consistent|inconclusive) \(\d seeds?\)$|^not measured|^not testable at this "
                                    r"scale \(").all()
    assert claims.set_index("id").verdict["fig1.bn_test_higher"].startswith("not testable at this scale (needs both")
    assert len(pd.read_csv(tmp_path / "claims.csv")) == len(claims)
    ics_claim = claims[claims.id == "fig3.ics_l2.layer5.lr0.1"].iloc[0]
    assert not ics_claim.verdict.startswith("not measured") and "(2 seeds)" in ics_claim.verdict
    assert claims[claims.id.str.endswith("lr0.01")].verdict.str.startswith("not measured").all()
    assert (tmp_path / "report.html").read_text().count("<tr>") >= len(claims)


def test_cli_figures_and_report(sweep, tmp_path):
    proc = run_cli("figures", str(sweep), "--out", str(tmp_path / "f"), "--format", "pdf", "--only", "fig1")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "f" / "fig1.pdf").exists() and not (tmp_path / "f" / "fig1.png").exists()
    proc = run_cli("report", str(sweep), "--out", str(tmp_path / "r"))
    assert proc.returncode == 0 and (tmp_path / "r" / "results.csv").exists()
    bad = run_cli("figures", str(tmp_path / "nothing-here"))
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "does not exist" in bad.stderr


def test_the_readme_s_figures_and_report_commands_give_a_report_with_its_figures(sweep, tmp_path):
    """The README's two commands word for word (its example sweep path replaced by this sweep): the
    report draws the figures its own folder lacks, so the page carries every figure the runs allow."""
    import re
    import shlex

    readme = (REPO / "README.md").read_text()
    commands = [line.split("#")[0].strip() for line in readme.splitlines()
                if line.startswith(("ics-study figures ", "ics-study report "))]
    assert [c.split()[1] for c in commands] == ["figures", "report"], commands
    for command in commands:
        args = [str(sweep) if a.startswith("results/multiruns/") else a for a in shlex.split(command)[1:]]
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "results" / "report" / "report.html").read_text()
    drawn = {p.stem for p in (tmp_path / "results" / "figures").glob("*.png")}
    embedded = set(re.findall(r"<img alt='(\w+)' src='data:image/png;base64,", page))
    assert drawn and embedded == drawn, (embedded, drawn)


def test_report_reads_the_aggregate_table(sweep, tmp_path):
    """After ``ics-study aggregate``, the report needs nothing but aggregate.parquet: with every
    per-run table deleted it gives the same numbers and verdicts as from the tables themselves."""
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    proc = run_cli("aggregate", str(copy))
    assert proc.returncode == 0, proc.stderr
    for table in ("metrics", "activations", "histograms", "probe_channels"):
        for folder in copy.glob(f"*/{table}"):
            shutil.rmtree(folder)
    from_tables, claims_tables = make_report([sweep], tmp_path / "a")
    from_aggregate, claims_aggregate = make_report([copy], tmp_path / "b")
    pd.testing.assert_frame_equal(from_tables, from_aggregate)
    pd.testing.assert_frame_equal(claims_tables, claims_aggregate)
    drift = claims_aggregate[(claims_aggregate.statistic == "drift/pre_relu/relative") & claims_aggregate.figure.isin(["fig1", "fig8"])]
    assert len(drift) and not drift.verdict.str.startswith("not measured").any()


def test_a_stale_aggregate_is_not_used(sweep, tmp_path):
    """A run added after ``aggregate`` (or one that continued) makes the file stale: the report
    then builds the rows itself instead of missing the run."""
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("7_*"))
    assert run_cli("aggregate", str(copy)).returncode == 0
    shutil.copytree(next(sweep.glob("7_*")), copy / "7_late")
    res, _ = make_report([copy], tmp_path / "r")
    assert res.seeds.sum() == len(SWEEP)


def test_figures_take_their_runs_from_the_aggregate(sweep, tmp_path):
    """The run list (identity, flags, final accuracies) is the same read from aggregate.parquet as
    built from the run folders, and it says which runs had which measurements on."""
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    built = find_runs([copy]).table
    assert run_cli("aggregate", str(copy)).returncode == 0
    read = find_runs([copy]).table
    pd.testing.assert_frame_equal(built.drop(columns="path"), read.drop(columns="path"), check_dtype=False)
    assert set(read[read.ics].lr) == {0.1} and set(read[~read.ics].lr) == {0.5} and read.probe.all()


def test_wall_time_per_preset_from_a_hand_made_table():
    from ics_study.analysis.report import wall_time_table

    runs = pd.DataFrame({"path": ["/r/paper/0_vgg", "/r/paper/1_vgg", "/r/paper/2_vgg", "/r/paper/3_vgg_bn", "/r/lp/0_lp1"],
                         "variant": ["vgg", "vgg", "vgg", "vgg_bn", "vgg_lp1"], "device": ["cpu"] * 4 + ["cuda"],
                         "summary/wall_time_s": [120.0, 180.0, 600.0, 240.0, np.nan]})
    w = wall_time_table(runs).set_index(["sweep", "variant"])
    assert w.loc[("paper", "vgg")].tolist() == ["cpu", 3, 3.0, 2.0, 15.0]  # median, fastest, sum in minutes
    assert w.loc[("paper", "vgg_bn")].tolist() == ["cpu", 1, 4.0, 4.0, 4.0]
    lp = w.loc[("lp", "vgg_lp1")]
    assert lp.device == "cuda" and lp.runs == 1 and pd.isna(lp.median_min) and pd.isna(lp.total_min)
    # the machine where the summary names it: two CPUs are two rows, never one median
    runs["hardware"] = [None, "AMD EPYC (family 25 model 1, 2 threads)", "AMD EPYC (family 25 model 1, 2 threads)",
                        None, "NVIDIA H100"]
    w = wall_time_table(runs).set_index(["sweep", "variant", "device"])
    assert w.loc[("paper", "vgg", "cpu")].tolist() == [1, 2.0, 2.0, 2.0]
    assert w.loc[("paper", "vgg", "AMD EPYC (family 25 model 1, 2 threads)")].tolist() == [2, 6.5, 3.0, 13.0]
    assert w.loc[("lp", "vgg_lp1", "NVIDIA H100")].runs == 1


@pytest.mark.parametrize("name", ["fig3", "fig4", "fig8"])
def test_the_dln_runs_stay_out_of_the_vgg_figures(sweep, tmp_path, name):
    """DLN runs carry ICS, landscape and probes at lr 1e-6: fig3's title once listed their lr as "not shown"."""
    import matplotlib.pyplot as plt

    from ics_study.analysis.runs import Runs

    runs = find_runs([sweep])
    dln = runs.table.iloc[:1].assign(variant="dln_batch", lr=1e-6, path=str(tmp_path / "dln"), ics=True,
                                     landscape=True, probe=True)
    with plt.rc_context(RC):
        fig = FIGURES[name](Runs(pd.concat([runs.table, dln], ignore_index=True)))
    title = fig._suptitle.get_text()
    plt.close(fig)
    assert "1e-06" not in title and "dln" not in title.lower(), title


def test_the_report_names_run_folders_relative_to_the_working_directory(tmp_path, monkeypatch):
    from ics_study.analysis.report import run_folders

    runs = pd.DataFrame({"path": [str(tmp_path / "sweeps" / "a" / "0_vgg"), str(tmp_path / "sweeps" / "a" / "1_vgg"),
                                  str(tmp_path / "sweeps" / "b" / "0_vgg")]})
    monkeypatch.chdir(tmp_path)
    assert run_folders(runs) == ["sweeps/a", "sweeps/b"]
    monkeypatch.chdir(tmp_path / "..")
    assert run_folders(runs) == [f"{tmp_path.name}/sweeps/a", f"{tmp_path.name}/sweeps/b"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert run_folders(runs) == [str((tmp_path / "sweeps" / "a").resolve()), str((tmp_path / "sweeps" / "b").resolve())]


def test_the_aggregate_s_w1_shift_equals_a_direct_computation(sweep):
    """shift/<point>/w1_lag of a run: the Wasserstein-1 distance between consecutive histograms of
    every sampled unit of layers #2, #9, #13 over the unit's mean spread, averaged; named by the
    run's probe point."""
    from ics_study.analysis.aggregate import DRIFT_LAYERS, load, per_run
    from ics_study.analysis.shift import wasserstein1

    table = per_run(load([sweep]))
    assert table["shift/pre_relu/w1_lag"].notna().all()
    assert table["shift/pre_norm/w1_lag"].notna().tolist() == (table.lr == 0.1).tolist()  # only those runs record it
    run = next(sweep.glob("2_vgg_bn"))
    acts, hists = pd.read_parquet(run / "activations"), pd.read_parquet(run / "histograms")
    acts = acts[(acts.stat.astype(str) == "var") & (acts.point.astype(str) == "pre_relu")]
    hists = hists[hists.point.astype(str) == "pre_relu"]
    per_unit = []
    for (layer, channel), h in hists[hists.layer.isin(DRIFT_LAYERS)].groupby(["layer", "channel"]):
        h = h.sort_values("step")
        spread = np.sqrt(acts[(acts.layer == layer) & (acts.channel == channel)].value.astype(float)).mean()
        pairs = list(zip(h.iloc[:-1].itertuples(), h.iloc[1:].itertuples()))
        per_unit.append(np.mean([wasserstein1(p.bin_edges, p.counts, q.bin_edges, q.counts) for p, q in pairs]) / spread)
    got = table[table.path.str.endswith("2_vgg_bn")]["shift/pre_relu/w1_lag"].item()
    assert got == pytest.approx(np.mean(per_unit), rel=1e-9)
