"""The ``ics-study`` command: a table of subcommands, each a function of its argument list.

    ics-study train [OVERRIDES...] [-m] [--cfg job] [--info] [--help]

Adding a subcommand is one entry in ``COMMANDS``. ``train`` is a thin Hydra main: it composes the
configs shipped in ``ics_study.configs`` (the top-level ``configs/`` folder), turns them into the
typed ``TrainConfig`` and calls ``train(cfg, run_dir)``; everything else lives outside Hydra.

Exit status: 0 done; 1 a job of a sweep failed; 2 a user mistake (one line on stderr, no traceback);
3 a run diverged; 4 a result file could not be written (a full disk: free space and rerun to resume);
130 interrupted by SIGTERM/SIGINT (checkpointed: rerun the command to resume).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .compose import hydra_config_path, register_schemas
from .errors import UserError

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_WRITE_FAILED = 4  # a result file could not be written (a full disk, an I/O error): free space and rerun
EXIT_INTERRUPTED = 130  # SIGTERM/SIGINT: checkpoint written, status "interrupted"; rerun to resume
log = logging.getLogger("ics_study")


@dataclass
class Command:
    summary: str
    run: Callable[[list[str]], int]


# --- train -------------------------------------------------------------------------------------
_job_statuses: list[str] = []


def _train_job(cfg) -> dict:
    """One Hydra job: typed config -> train() -> summary. Runs once per job in a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from .errors import WriteFailed
    from .recording.storage import write_json
    from .train import train
    from .train.checkpoint import ConfigMismatch
    from .train.run_lock import RunLocked

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if "interrupted" in _job_statuses:  # a signal stopped an earlier job of this sweep: stop the sweep
        log.warning("%s not started: the sweep was stopped by a signal; rerun the same command to resume", run_dir)
        return None  # no status.json: `ics-study sweep` lists it as pending
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe_file = run_dir / ".write-test"
        probe_file.touch()
        probe_file.unlink()
    except OSError as e:
        raise UserError(f"cannot write to the run dir {run_dir} ({e.strerror}); set paths.results_dir") from None
    train_cfg = OmegaConf.to_object(cfg)
    _one_gpu_per_parallel_job(train_cfg, HydraConfig.get())
    try:
        summary = train(train_cfg, run_dir)
    except (RunLocked, ConfigMismatch) as e:  # another process writes there, or the dir holds a run made
        # with other settings: this command's mistake, so touch nothing of that run (status.json included)
        _job_statuses.append("failed")
        if HydraConfig.get().mode == RunMode.RUN:
            print(f"ics-study: error: {e}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None
        log.error("%s", e)
        raise
    except WriteFailed as e:  # a full disk or an I/O error: a clean stop, the checkpoint is intact
        from .train.checkpoint import saved_step

        step = saved_step(run_dir)
        kept = f"the last checkpoint (step {step}, {run_dir}/checkpoint.pt) is intact" if step is not None else \
            "no checkpoint had been written yet"
        with contextlib.suppress(WriteFailed):  # where it can still be written
            write_json(run_dir / "status.json", {"status": "failed", "error": str(e), "checkpoint_step": step})
        _job_statuses.append("failed")
        line = f"{e}; {kept}: free space, then rerun the same command to resume"
        if HydraConfig.get().mode == RunMode.RUN:
            print(f"ics-study: error: {line}", file=sys.stderr)
            raise SystemExit(EXIT_WRITE_FAILED) from None
        log.error("%s", line)
        raise
    except UserError as e:
        write_json(run_dir / "status.json", {"status": "failed", "error": str(e)})
        _job_statuses.append("failed")
        if HydraConfig.get().mode == RunMode.RUN:  # a single run: one line, no traceback
            print(f"ics-study: error: {e}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None
        log.error("%s", e)  # a sweep: the other jobs go on; status.json holds the error
        raise
    except Exception as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        write_json(run_dir / "status.json", {"status": "failed", "error": f"{type(e).__name__}: {first}"})
        _job_statuses.append("failed")
        raise
    _job_statuses.append(summary["status"])
    from .analysis.board import command

    finals = ", ".join(f"{k} {v:.4g}" for k, v in summary["final"].items() if v is not None and v == v)
    log.info("%s after %d steps: %s", summary["status"], summary["steps"], finals)
    log.info("run dir: %s", run_dir)
    if train_cfg.logger.tensorboard:
        log.info("watch:   %s", command(run_dir))
    return summary


def _one_gpu_per_parallel_job(cfg, hydra_cfg) -> None:
    """Parallel local jobs on a machine with several GPUs: job k trains on cuda:(k mod #GPUs)."""
    if cfg.trainer.device != "auto" or "joblib" not in str(hydra_cfg.launcher.get("_target_", "")):
        return
    import torch

    if torch.cuda.device_count() > 1:
        cfg.trainer.device = f"cuda:{hydra_cfg.job.num % torch.cuda.device_count()}"


def _hydra_error_line(ex: BaseException) -> str | None:
    """Hydra/OmegaConf composition errors condensed to one line; None for anything else."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(ex, (HydraException, OmegaConfBaseException)):
        return None
    lines, options = [], []
    for chain in (ex, ex.__cause__):
        if chain is None:
            continue
        for line in str(chain).splitlines():
            if line.startswith("Config search path"):
                break
            if line.startswith("\t"):
                options.append(line.strip())
            elif line.strip() and not line.startswith(("    full_key", "    object_type", "full_key", "object_type")):
                lines.append(line.strip())
    text = " ".join(lines)
    if options:
        text += " " + ", ".join(options)
    for launcher, plugin in (("joblib", "hydra-joblib-launcher"), ("submitit", "hydra-submitit-launcher")):
        if f"hydra/launcher/{launcher}" in text:
            return f"this launcher needs the {plugin} plugin: pip install 'ics-study[cluster]'"
    return text


def _quote_home(arg: str) -> str:
    """``key=~/x`` -> ``key='~/x'``: Hydra's grammar refuses a bare '~' (shells like zsh leave it)."""
    key, sep, value = arg.partition("=")
    if sep and value.startswith("~") and not arg.startswith("-"):
        return f"{key}='{value}'"
    return arg


def run_train(args: list[str]) -> int:
    logging.raiseExceptions = False  # a log line that cannot be written (a full disk) must not print a traceback
    import hydra

    register_schemas()
    main = hydra.main(version_base="1.3", config_path=hydra_config_path(), config_name="train")(_train_job)
    saved_argv, saved_env = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = ["ics-study train", *map(_quote_home, args)]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us; we print them as one line
    _job_statuses.clear()
    multirun = "-m" in args or "--multirun" in args
    if (line := _out_of_range(args, multirun)) is not None:
        print(f"ics-study: error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        main()
    except UserError as e:
        if multirun:  # a job failed; the others ran
            print(f"ics-study: error: a job of the sweep failed ({e}); `ics-study sweep SWEEP_DIR` lists them",
                  file=sys.stderr)
            return 1
        print(f"ics-study: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:  # Hydra could not create the run or sweep dir (MissingConfigException is one too)
        if e.filename is None or _hydra_error_line(e) is not None:
            print(f"ics-study: error: {_hydra_error_line(e) or e}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(f"ics-study: error: cannot write {e.filename} ({e.strerror}); set paths.results_dir "
              "(or hydra.run.dir / hydra.sweep.dir) to a writable folder", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as e:
        line = _hydra_error_line(e)
        if not _job_statuses:  # before any job started: the overrides themselves
            line = _malformed(args, e, line)
        if line is None:
            if multirun:  # a job failed; the others ran; its status.json has the details
                first = (str(e).splitlines() or [""])[0]
                print(f"ics-study: error: a job of the sweep failed ({type(e).__name__}: {first}); "
                      "`ics-study sweep SWEEP_DIR` lists them", file=sys.stderr)
                return 1
            raise
        print(f"ics-study: error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        sys.argv = saved_argv
        if saved_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_env
    if "interrupted" in _job_statuses:
        return EXIT_INTERRUPTED
    return EXIT_DIVERGED if "diverged" in _job_statuses else 0


def _culprit(args: list[str]) -> str | None:
    """The first override that Hydra's grammar cannot parse as key=value, if any."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for arg in args:
        if arg.startswith("-"):
            continue
        try:
            if "=" not in arg or not parser.parse_overrides([arg])[0].key_or_group:
                return arg
        except Exception:
            return arg
    return None


def _malformed(args: list[str], error: Exception, line: str | None) -> str | None:
    """One line for an override Hydra could not parse (its own message names no key, or it raised a
    bare ValueError): name the override and the form it should take."""
    from hydra.errors import OverrideParseException

    if line is not None and not isinstance(error, OverrideParseException):
        return line
    culprit = _culprit(args)
    if culprit is not None:
        return f"the override {culprit!r} is malformed; write key=value (e.g. optim.lr=0.05 or model=vgg_bn)"
    if line is not None:
        return line
    first = (str(error).splitlines() or [type(error).__name__])[0]
    return f"the overrides were refused ({first}); check them against `ics-study train --help`"


def _out_of_range(args: list[str], multirun: bool) -> str | None:
    """A single run's mistake in its overrides (a typo, a wrong type, a value out of range), found
    before Hydra creates the run dir, so that a refused command writes nothing; None if the config is
    fine or the command is not a plain run (a sweep, --cfg, --help: Hydra reports those itself)."""
    if multirun or any(a.startswith("-") for a in args):
        return None
    from .compose import compose
    from .validate import validate

    try:
        cfg = compose([a for a in args if not a.startswith(("hydra.", "+hydra.", "hydra/"))])
    except Exception as e:  # a typo, a wrong type, a broken interpolation: one line, before any dir exists
        line = _malformed(args, e, _hydra_error_line(e))
        key = getattr(e, "full_key", None)
        return f"{key}: {line}" if key and key not in line else line
    try:
        validate(cfg)
    except UserError as e:
        return str(e)
    return None


def _user_errors_as_one_line(run: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
    def wrapped(args: list[str]) -> int:
        try:
            return run(args)
        except UserError as e:
            print(f"ics-study: error: {e}", file=sys.stderr)
            return EXIT_USER_ERROR

    return wrapped


def run_figures(args: list[str]) -> int:
    from .analysis.figures import main as figures_main

    return figures_main(args)


def run_report(args: list[str]) -> int:
    from .analysis.report import main as report_main

    return report_main(args)


def run_sweep(args: list[str]) -> int:
    from .analysis.sweeps import main_sweep

    return main_sweep(args)


def run_aggregate(args: list[str]) -> int:
    from .analysis.aggregate import main as main_aggregate

    return main_aggregate(args)


def run_board(args: list[str]) -> int:
    from .analysis.board import main as board_main

    return board_main(args)


COMMANDS: dict[str, Command] = {
    "train": Command("train a model (Hydra overrides; -m for sweeps; --cfg job, --info, --help)", run_train),
    "figures": Command("the paper's figures from finished runs: figures PATH... [--out DIR] [--format png,pdf]",
                       _user_errors_as_one_line(run_figures)),
    "report": Command("the paper's claims judged, as report.html, report.md and CSV: report PATH... [--out DIR]",
                      _user_errors_as_one_line(run_report)),
    "board": Command("TensorBoard on a results folder with every point kept: board [PATH] [--port N]",
                     _user_errors_as_one_line(run_board)),
    "sweep": Command("status of a sweep's jobs (failed ones stand out): sweep PATH", _user_errors_as_one_line(run_sweep)),
    "aggregate": Command("one tidy table for a whole sweep: aggregate PATH [--out FILE]",
                         _user_errors_as_one_line(run_aggregate)),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {cmd.summary}" for name, cmd in COMMANDS.items())
    return (
        "usage: ics-study COMMAND [ARGS...]\n\n"
        "Reproduce Santurkar et al. (2018), 'How Does Batch Normalization Help Optimization?'.\n\n"
        f"commands:\n{rows}\n\n"
        "`ics-study COMMAND --help` shows a command's options."
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if argv else EXIT_USER_ERROR)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ics-study: error: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    sys.exit(COMMANDS[name].run(rest))


if __name__ == "__main__":
    main()
