"""One tidy table for a set of runs: what ``ics-study aggregate PATH`` writes, and what ``report``
and ``figures`` read to know which runs there are, what they are and how they ended.

    ics-study aggregate results/multiruns/2026-11-26/14-10-00      # -> PATH/aggregate.parquet (+ .csv)

One row per run (job) and metric. Columns: ``job`` (the run folder, relative to PATH), ``status``,
the run's identity (``variant``, ``norm``, ``lr``, ``seed``, ``width``, ``precision``, ``max_steps``,
``data``, whether ``probe``/``ics``/``landscape`` were on, ``steps``, ``diverged_at``), the swept
overrides (one column each, e.g. ``model``, ``optim.lr``), then ``metric``, ``step``, ``value``.
Metrics:

- every series of the run's ``metrics`` table, at its last step (``train/acc``, ``test/acc``,
  ``ics/layer05/l2_diff``, ...);
- ``summary/...``: wall time, training images/s, steps (``summary.json``);
- derived, with the definitions the report uses (so that every report number is in this table):
  ``final/train_acc`` the mean batch accuracy over the last 5% of steps, ``final/test_acc`` the test
  accuracy after the last step, ``auc/train_acc`` the train-curve area, the mean batch accuracy
  over the planned steps (a diverged run's unrun steps at the accuracy it recorded once diverged),
  ``steps_to/90`` and ``steps_to/99`` the first step at which the
  100-step rolling mean of the batch accuracy reaches 90% / 99% (NaN: never), ``mean/<series>`` the
  mean over the probed steps after step 1 of every ICS, landscape and sharpness series (step 1 is
  the initialisation, where BN's ICS is ~10x its later value), ``settled/landscape/<series>`` and
  ``settled/sharpness/<series>`` the same after the first ``TRANSIENT`` of the run (Figure 4's
  claims; with ``log_loss_range`` = log10(loss_max / loss_min) and ``gradpred_relative`` =
  gradpred_max / grad_norm, step by step; ``beta_over_2_lr``, ``top_over_2_lr`` and
  ``gradient_curvature_over_2_lr``, the settled beta-smoothness, top Hessian eigenvalue and curvature
  along the gradient x lr / 2: 1 is the edge of stability),
  ``drift/<point>/unit_mean`` the mean over layers #2, #9, #13 and steps of |mu(t+1) - mu(t)|
  of the rank-0 sampled unit (the paper's "random activation") at the run's ``probe.point``,
  ``drift/<point>/relative`` the same over each unit's spread, and ``shift/<point>/w1_lag`` and
  ``w1_from_start`` the Wasserstein-1 distance between a unit's consecutive histograms and from its
  first, over a fixed spread (``shift.py``).

``load(paths)`` is what the report uses: under each path it takes every ``aggregate.parquet`` that
is current (it lists exactly the finished runs under its folder, is newer than all of them, and was
written by this version of the code that computes its rows: ``DERIVED_BY``) and builds the rows of
any other run in memory, so a report is right whether or not ``aggregate`` ran.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ..config import ABLATIONS, NOISY_NORMS, ModelConfig, NoiseConfig
from ..errors import UserError
from . import run_records, shift, sweeps
from .claims import FAIL_ACC
from .run_records import read_summary
from .shift import unit_shift
from .sweeps import jobs

FILENAME = "aggregate.parquet"
# What made an aggregate file: a digest of the modules that compute its rows, in the file's metadata.
# A file that other code wrote is rebuilt in memory (a row added since would read "not measured").
DERIVED_BY = hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in (sys.modules[__name__], run_records,
                                                                               shift, sweeps))).hexdigest()[:16]
STAMP = b"ics_study.derived_by"
THRESHOLDS = (0.5, 0.8, 0.9, 0.99)  # steps_to/50 ... steps_to/99
LAST_EVALS = 3  # final/test_acc_last3: test accuracy averaged over the last evaluations
DRIFT_LAYERS = (2, 9, 13)
EDGE_OF_STABILITY = {"landscape/beta_smoothness": "landscape/beta_over_2_lr",  # settled value x lr / 2 (Cohen et al. 2021)
                     "sharpness/top_eigenvalue": "sharpness/top_over_2_lr",
                     "sharpness/gradient_curvature": "sharpness/gradient_curvature_over_2_lr"}
KEEPS_DIVERGED = "auc_train_acc"  # the one per-run statistic a diverged run has in full (_area); others leave it out
TRANSIENT = 0.1  # [I] the first 10% of steps: the standard net's gradients start vanishingly small (~150 of
# 2,000 steps at cpu_small), which makes its gradient look 100x more predictive; Figure 4 is judged after it
IDENTITY = ("variant", "norm", "lr", "seed", "width", "precision", "max_steps", "data", "probe", "probe_point",
            "probe_unit", "ics", "landscape", "steps", "diverged_at", "device", "hardware",
            *(f"noise_{k}" for k in ABLATIONS))  # the keys of identity()
FLAGS = ("probe", "ics", "landscape")
# the dtype of identity's noise_<option> column for each of config.ABLATIONS (missing: a run without the noise)
NOISE_DTYPES = {"strength": "float64", "granularity": "string", "redraw_every": "float64", "in_eval": "boolean"}
PER_RUN = {"final/train_acc": "final_train_acc", "final/test_acc": "final_test_acc",
           "final/test_acc_last3": "final_test_acc_last3", "auc/train_acc": "auc_train_acc",
           "final/test_acc_recalibrated": "final_test_acc_recalibrated", "final/test_acc_noise_on": "final_test_acc_noise_on",
           **{f"steps_to/{round(t * 100)}": f"steps_to_{round(t * 100)}" for t in THRESHOLDS}}  # derived metrics -> per_run columns


def identity(run: Path) -> dict:
    """Who the run is, from its resolved ``config.yaml`` (and ``summary.json`` for its steps)."""
    cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").exists() else {}
    model, trainer = cfg.get("model") or {}, cfg.get("trainer") or {}
    summary = read_summary(run)
    return {"variant": variant_of(model), "norm": model.get("norm"), "lr": float((cfg.get("optim") or {}).get("lr", np.nan)),
            "seed": cfg.get("seed"), "width": float(model.get("width", 1.0)), "precision": trainer.get("precision"),
            "max_steps": trainer.get("max_steps"), "data": (cfg.get("data") or {}).get("name"),
            "probe_point": _points(cfg)[0], "probe_unit": (cfg.get("probe") or {}).get("unit", "channel"),
            **{group: bool((cfg.get(group) or {}).get("enabled")) for group in FLAGS},
            "steps": summary.get("steps"), "diverged_at": summary.get("diverged_at"),
            "device": summary.get("device"), "hardware": summary.get("hardware"),
            **_noise_options(model)}


def _noise_options(model: dict) -> dict:
    """``noise_<option>`` of NoiseConfig's ablations for a network with the noise (its default where the
    saved config predates the option); None for the others."""
    noisy, noise, defaults = model.get("norm") in NOISY_NORMS, model.get("noise") or {}, NoiseConfig()
    return {f"noise_{k}": noise.get(k, getattr(defaults, k)) if noisy else None for k in ABLATIONS}


def variant_of(model: dict) -> str:
    """What a run is, from its saved ``model`` config: the model's name, with any option beyond the
    paper that differs from its default, e.g. ``vgg_bn_noise[strength=2]`` or
    ``vgg_bn_noise[granularity=layer,redraw_every=0]``; ``dln_<norm>`` for the deep linear network."""
    if model.get("arch") == "dln":
        return f"dln_{model.get('norm')}"
    options = {}
    if model.get("norm") in NOISY_NORMS:
        noise, defaults = model.get("noise") or {}, NoiseConfig()
        options = {k: noise[k] for k in ABLATIONS if k in noise and noise[k] != getattr(defaults, k)}
    if model.get("norm") in ("group", "ws_group") and model.get("groups", ModelConfig.groups) != ModelConfig.groups:
        options["groups"] = model["groups"]
    label = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={str(v).lower()}" for k, v in options.items())
    return f"{model.get('name')}[{label}]" if label else str(model.get("name"))


def _points(cfg: dict) -> list[str]:
    """The run's probe points, first the main one (``probe.point`` in runs made before ``points``)."""
    probe = cfg.get("probe") or {}
    return list(probe.get("points") or [probe.get("point", "pre_relu")])


def derived(run: Path, metrics: pd.DataFrame, point: str = "pre_relu", lr: float = np.nan) -> dict[str, tuple[int | None, float]]:
    """The report's per-run numbers: metric -> (step, value); ``point``: the run's main probe point
    (the one its probe tables are at when they have no point column); ``lr``: the run's learning rate
    (the edge-of-stability ratios, curvature x lr / 2)."""
    out: dict[str, tuple[int | None, float]] = {}
    acc = metrics[metrics.metric == "train/acc"].sort_values("step")
    if len(acc):
        last = int(acc.step.max())
        out["final/train_acc"] = (last, float(acc[acc.step > last * 0.95].value.mean()))
        rolling = acc.set_index("step").value.rolling(100, min_periods=100).mean()
        for th in THRESHOLDS:
            hit = rolling[rolling >= th]
            out[f"steps_to/{round(th * 100)}"] = (None, float(hit.index[0]) if len(hit) else np.nan)
        # area under the training curve per step: a speed that every run has, ceiling or not
        out["auc/train_acc"] = (last, _area(acc, read_summary(run)))
    loss = metrics[metrics.metric == "train/loss"].value.to_numpy(dtype=float)
    if len(loss) and (loss > 0).all():  # the DLN's speed (no accuracy): mean log10 training loss
        out["auc/log10_train_loss"] = (None, float(np.mean(np.log10(loss))) if np.isfinite(loss).all() else np.nan)
    test = metrics[metrics.metric == "test/acc"].sort_values("step")
    if len(test):
        out[f"final/test_acc_last{LAST_EVALS}"] = (int(test.step.iloc[-1]), float(test.value.iloc[-LAST_EVALS:].mean()))
    summary = read_summary(run)
    for key in ("test_acc", "test_acc_recalibrated", "test_acc_noise_on"):  # the last two: noisy nets only
        value = (summary.get("final") or {}).get(key)
        if value is not None:
            out[f"final/{key}"] = (summary.get("steps"), float(value))
    probed = metrics[metrics.metric.str.startswith(("ics/", "landscape/", "sharpness/")) & (metrics.step > 1)]
    for name, g in probed.groupby("metric"):
        out[f"mean/{name}"] = (None, float(g.value.mean()))
    landscape = probed[probed.metric.str.startswith("landscape/")].pivot_table(index="step", columns="metric",
                                                                                values="value", aggfunc="first")
    if "landscape/loss_min" in landscape:  # Figure 4a: how much the loss varies along the gradient
        landscape["landscape/loss_range"] = landscape["landscape/loss_max"] - landscape["landscape/loss_min"]
        out["mean/landscape/loss_range"] = (None, float(landscape["landscape/loss_range"].mean()))
        with np.errstate(divide="ignore", invalid="ignore"):
            landscape["landscape/log_loss_range"] = np.log10(landscape["landscape/loss_max"] / landscape["landscape/loss_min"])
    if "landscape/gradpred_max" in landscape and "landscape/grad_norm" in landscape:
        landscape["landscape/gradpred_relative"] = landscape["landscape/gradpred_max"] / landscape["landscape/grad_norm"]
    curvature = probed[probed.metric.str.startswith("sharpness/")].pivot_table(index="step", columns="metric",
                                                                                values="value", aggfunc="first")
    steps = int(acc.step.max()) if len(acc) else int(metrics.step.max()) if len(metrics) else 0
    for series in (landscape, curvature):
        settled = series[series.index > TRANSIENT * steps]
        for name in settled.columns:
            out[f"settled/{name}"] = (None, float(settled[name].replace([np.inf, -np.inf], np.nan).mean()))
    for name, ratio in EDGE_OF_STABILITY.items():  # over 2/lr: 1 is the edge of stability
        if f"settled/{name}" in out and np.isfinite(lr):
            out[f"settled/{ratio}"] = (None, out[f"settled/{name}"][1] * lr / 2)
    for at, values in _drift(run, point).items():
        names = (f"drift/{at}/unit_mean", f"drift/{at}/relative", f"shift/{at}/w1_lag", f"shift/{at}/w1_from_start")
        for name, value in zip(names, values):
            if not np.isnan(value):
                out[name] = (None, value)
    return out


def _area(acc: pd.DataFrame, summary: dict) -> float:
    """Mean batch accuracy per step over the run's planned steps. A diverged run stops a few steps
    after its loss turns non-finite; the steps it did not run count at the accuracy it recorded
    once diverged (a network of NaNs predicts one class whatever it is given), so its area is
    comparable with a finished run's instead of stopping at the moment it broke."""
    at, planned = summary.get("diverged_at"), summary.get("max_steps")
    if summary.get("status") != "diverged" or at is None or not planned or acc.step.max() >= planned:
        return float(acc.value.mean())
    broken = acc[acc.step >= at].value
    if not len(broken):
        return float(acc.value.mean())
    return float((acc.value.sum() + (planned - acc.step.max()) * broken.mean()) / planned)


def _table(folder: Path, columns: list[str], **read) -> pd.DataFrame:
    """A run's table, or an empty one with ``columns`` where the folder is missing or holds no part
    yet (a run that has just started: its folders exist before its first flush)."""
    if not folder.is_dir() or not any(folder.glob("*.parquet")):
        return pd.DataFrame({c: [] for c in columns})
    return pd.read_parquet(folder, **read)


def _drift(run: Path, main_point: str) -> dict[str, tuple[float, float, float, float]]:
    """Per probe point, the sampled units' movement over layers #2, #9, #13 (``DRIFT_LAYERS``):

    - Figure 8's quantity: the mean over those layers and steps of |mu(t+1) - mu(t)| of the rank-0 unit;
    - the same relative to each unit's spread, |mu(t+1) - mu(t)| / sigma(t), averaged over every
      sampled unit (free of the networks' different activation scales; moments only);
    - the Wasserstein-1 distance between each unit's consecutive histograms and from its first one,
      over the unit's fixed spread (``shift.py``: the whole distribution, not two moments)."""
    chans = _table(run / "probe_channels", ["layer", "rank", "channel"])
    layers = [("layer", "in", list(DRIFT_LAYERS))]
    acts = _table(run / "activations", ["step", "layer", "channel", "stat", "value"], filters=layers)
    if not len(chans) or not len(acts):
        return {}
    rank0 = set(zip(chans[chans["rank"] == 0].layer, chans[chans["rank"] == 0].channel))
    acts = acts.assign(stat=acts.stat.astype(str), point=acts.point.astype(str) if "point" in acts else main_point)
    acts = acts[acts.stat.isin(["mean", "var"])]
    hists = _table(run / "histograms", ["layer", "channel", "step"], filters=layers)
    hists = hists.assign(point=hists.point.astype(str) if "point" in hists else main_point)
    out = {}
    for point, at in acts.groupby("point"):
        absolute, relative, lags, starts = [], [], [], []
        h_at = hists[hists.point == point]
        for (layer, channel), g in at.groupby(["layer", "channel"]):
            wide = g.pivot_table(index="step", columns="stat", values="value").sort_index()
            if "mean" not in wide or "var" not in wide:
                continue
            step = wide["mean"].astype(float).diff().abs()
            ratio = (step / np.sqrt(wide["var"].astype(float).shift())).replace([np.inf, -np.inf], np.nan)
            relative.append(ratio.mean())
            if (layer, channel) in rank0:
                absolute.append(step.mean())
            lag, start = unit_shift(h_at[(h_at.layer == layer) & (h_at.channel == channel)], wide["var"])
            lags.append(lag)
            starts.append(start)
        out[point] = tuple(_nanmean(v) for v in (absolute, relative, lags, starts))
    return out


def _nanmean(values) -> float:
    return float(np.nanmean(values)) if len(values) and not np.isnan(values).all() else np.nan


def aggregate(path: str | Path) -> pd.DataFrame:
    """The aggregate table of every run (job) under ``path``."""
    root = Path(path).expanduser()
    table = jobs(root)
    swept = [c for c in table.columns if c not in {"job", "path", "status", "error", "steps", "max_steps",
                                                    "diverged_at", "train_loss", "train_acc", "test_loss", "test_acc"}]
    rows = []
    for job in table.to_dict("records"):
        run = Path(job["path"])
        base = {"job": run.relative_to(root).as_posix() if run != root else ".", "status": job["status"],
                **identity(run), **{c: job[c] for c in swept}}
        metrics = _table(run / "metrics", ["step", "metric", "value"])
        metrics = metrics.assign(metric=metrics.metric.astype(str))
        for name, g in metrics.sort_values("step").groupby("metric", sort=True):
            rows.append({**base, "metric": name, "step": int(g.step.iloc[-1]), "value": float(g.value.iloc[-1])})
        summary = read_summary(run)
        for key in ("wall_time_s", "train_images_per_s", "steady_images_per_s", "steps"):
            if summary.get(key) is not None:
                rows.append({**base, "metric": f"summary/{key}", "step": summary.get("steps"), "value": float(summary[key])})
        for name, (step, value) in derived(run, metrics, base["probe_point"], base["lr"]).items():
            rows.append({**base, "metric": name, "step": step, "value": value})
    out = pd.DataFrame(rows)
    return out.astype({"step": "Int64"}) if len(out) else out


def _finished_runs(folder: Path) -> set[str]:
    return {s.parent.relative_to(folder).as_posix() if s.parent != folder else "." for s in folder.rglob("summary.json")
            if (s.parent / "config.yaml").exists() and read_summary(s.parent)}  # a broken summary: named, skipped


def _current(file: Path) -> pd.DataFrame | None:
    """The finished runs' rows of an aggregate file, if it still describes its folder exactly."""
    folder = file.parent
    try:
        if (pq.read_schema(file).metadata or {}).get(STAMP) != DERIVED_BY.encode():
            return None
        table = pd.read_parquet(file)
    except (OSError, ValueError):
        return None
    finished = _finished_runs(folder)
    newest = max(((folder / j / "summary.json").stat().st_mtime for j in finished), default=0.0)
    if set(table[table.metric == "summary/steps"].job) != finished or file.stat().st_mtime < newest:
        return None
    table = table[table.job.isin(finished)]
    return table.assign(path=[str(folder / j) if j != "." else str(folder) for j in table.job])


def load(paths) -> pd.DataFrame:
    """Aggregate rows of every finished run under ``paths``: from current aggregate files where there
    are some, built in memory for every other run. Adds ``path`` (the run folder)."""
    frames, files_used, runs_done = [], [], set()
    for p in (Path(q).expanduser().resolve() for q in paths):
        if not p.exists():
            raise UserError(f"{p} does not exist; give run or sweep folders (e.g. results/multiruns/...)")
        for file in sorted(p.rglob(FILENAME), key=lambda f: len(f.parts)):  # outermost first
            if any(file.parent.is_relative_to(d) for d in files_used):
                continue
            table = _current(file)
            if table is not None:
                frames.append(table[~table.path.isin(runs_done)])
                files_used.append(file.parent)
                runs_done.update(table.path)
        for run in sorted(_finished_runs(p)):
            folder = p / run if run != "." else p
            if str(folder) not in runs_done:
                frames.append(aggregate(folder).assign(path=str(folder), job=folder.name))
                runs_done.add(str(folder))
    frames = [f for f in frames if len(f)]
    if not frames:
        raise UserError(f"no finished runs (folders with summary.json) under: {', '.join(map(str, paths))}")
    return pd.concat(frames, ignore_index=True)


TRAJECTORY = ("variant", "lr", "seed", "width", "max_steps", "precision", "data")  # what fixes a run's training


def one_per_seed(table: pd.DataFrame, prefer: str | None = None) -> pd.DataFrame:
    """Each training once: runs that share ``TRAJECTORY`` trained alike (measurements never change
    training; on another CPU, to its rounding), such as a noisy-BN seed in both the paper sweep and
    the noise_strength preset. Keeps, of each such group, a run that has ``prefer`` (a statistic)
    where one has it, and of those the run with the most measurements on (``FLAGS``): the paper's
    claims are judged on the paper sweep's runs, never on whichever sweep's folder sorts first (the
    edge-of-stability sweep retrains lr 0.1 with the curvature probe, on another machine)."""
    keys = [k for k in TRAJECTORY if k in table]
    rank = pd.DataFrame({"missing": table[prefer].isna() if prefer in table else False,
                         "measured": sum((table[f].astype(bool) for f in FLAGS if f in table), start=0)},
                        index=table.index)
    rank = rank.sort_values(["missing", "measured"], ascending=[True, False], kind="stable")
    return table.loc[rank.index].drop_duplicates(keys).sort_index()


def at_chance(table: pd.DataFrame) -> pd.Series:
    """Per run: ended below ``FAIL_ACC`` train accuracy without diverging, a network that never
    trained (its curvature or shift is not a trained network's; the evidence and figures say so)."""
    if "final_train_acc" not in table:
        return pd.Series(False, index=table.index)
    return (table.status != "diverged") & (table.final_train_acc.astype(float) < FAIL_ACC)


def per_run(agg: pd.DataFrame) -> pd.DataFrame:
    """One row per run (``path``): its identity and status, and every metric as a column (the
    derived ones under the names of ``PER_RUN``), sorted by variant, lr and seed."""
    info = agg.drop_duplicates("path").set_index("path")
    table = info[["status", *(c for c in IDENTITY if c in info)]].copy()
    for flag in FLAGS:  # absent from aggregate files of older versions: off
        table[flag] = table[flag].astype("boolean").fillna(False).astype(bool) if flag in table else False
    for option, kind in NOISE_DTYPES.items():  # one dtype whether rows came from a file or from memory
        if f"noise_{option}" in table:
            table[f"noise_{option}"] = table[f"noise_{option}"].astype(kind)
    values = agg.pivot_table(index="path", columns="metric", values="value", aggfunc="first")
    table = table.join(values).rename(columns=PER_RUN)
    for col in PER_RUN.values():
        if col not in table:
            table[col] = np.nan
    table = table.reset_index().astype({"lr": float, "seed": int})
    return table.sort_values(["variant", "lr", "seed"]).reset_index(drop=True)


def write(table: pd.DataFrame, path: Path) -> None:
    """``table`` as parquet at ``path``, stamped with ``DERIVED_BY``."""
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    pq.write_table(arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), STAMP: DERIVED_BY.encode()}), path)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="ics-study aggregate", description="one tidy table for a whole sweep")
    ap.add_argument("path", help="a sweep folder (or any folder of runs)")
    ap.add_argument("--out", default=None, help="output file stem (default PATH/aggregate)")
    args = ap.parse_args(argv)
    table = aggregate(args.path)
    stem = Path(args.out) if args.out else Path(args.path).expanduser() / "aggregate"
    write(table, stem.with_suffix(".parquet"))
    table.to_csv(stem.with_suffix(".csv"), index=False)
    print(f"wrote {stem.with_suffix('.parquet')} and .csv: {len(table)} rows, {table.job.nunique()} jobs", file=sys.stderr)
    return 0
