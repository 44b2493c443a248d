"""Bad input, generated rather than hand-picked: for every key of the config schema, wrong types,
out-of-range values, unknown keys and group options, and malformed override strings. Each must end
with exit status 2, exactly one line ``ics-study: error: ...`` that names the key, no traceback,
and no run dir written. (The CLI is called in-process: the same code path, without a process start.)"""

from __future__ import annotations

import dataclasses
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ics_study.cli import run_train
from ics_study.config import TrainConfig
from tests.conftest import TINY

pytestmark = pytest.mark.slow
SKIP = {"data.root", "trainer.resume", "paths.results_dir", "paths.data_dir"}  # paths: any string is a valid type


def leaves(cls=TrainConfig, prefix="") -> list[tuple[str, type]]:
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            out += leaves(t, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", t))
    return out


LEAVES = leaves()
TYPED = [(k, t) for k, t in LEAVES if t in (int, float, bool) or typing.get_origin(t) is list]
WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=10)


def _wrong_value(t) -> st.SearchStrategy[str]:
    if t is bool:
        return st.sampled_from(["maybe", "yes please", "[1]", "{a: 1}"])  # OmegaConf takes any int as a bool
    if t in (int, float):
        return st.one_of(WORDS, st.sampled_from(["[1,2]", "{a: 1}", "1e", "--3"]))
    return st.sampled_from(["{a: 1}", "[1, abc", "abc"])  # a list key given a mapping, a broken list, a word


wrong_type = st.sampled_from(TYPED).flatmap(lambda kt: _wrong_value(kt[1]).map(lambda v: (kt[0], f"{kt[0]}={v}")))
unknown_key = st.tuples(st.sampled_from(["model", "data", "optim", "trainer", "probe", "ics", "landscape", "eval"]),
                        WORDS).map(lambda gk: (f"{gk[0]}.{gk[1]}x", f"{gk[0]}.{gk[1]}x=1"))
unknown_option = st.tuples(st.sampled_from(["model", "data", "optim", "experiment", "scale", "launcher"]),
                           WORDS).map(lambda go: (go[0], f"{go[0]}={go[1]}q"))
malformed = st.sampled_from(["model==vgg", "=3", "optim.lr", "trainer.max_steps=[1,2", "model=vgg_bn extra",
                             "probe.every=}", "seed=${nope}"]).map(lambda o: (o.split("=")[0] or o, o))
numeric = [(k, t) for k, t in TYPED if t in (int, float)]
out_of_range = st.sampled_from(numeric).flatmap(
    lambda kt: st.sampled_from([-1, -1000, 0]).map(lambda v: (kt[0], f"{kt[0]}={v}")))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.one_of(wrong_type, unknown_key, unknown_option, malformed, out_of_range))
def test_every_bad_override_gets_one_line_and_no_run_dir(case, tmp_path_factory, capsys):
    key, override = case
    if override.split("=")[0] in SKIP:
        return
    run_dir = tmp_path_factory.mktemp("bad") / "run"
    capsys.readouterr()
    code = run_train([*TINY, "trainer.max_steps=1", "trainer.eval_every=1", override, f"hydra.run.dir={run_dir}"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    if code == 0:  # only a value in range may be accepted (seed=-1, momentum=0, ...): then it trained
        assert override.endswith(("=-1", "=-1000", "=0")), (override, err)
        assert (run_dir / "summary.json").exists()
        return
    assert code == 2, (override, err)
    assert len(err) == 1 and err[0].startswith("ics-study: error:"), (override, err)
    assert "Traceback" not in err[0]
    name = key.split(".")[-1]
    assert name in err[0] or key in err[0], (override, err[0])
    assert not run_dir.exists(), override
