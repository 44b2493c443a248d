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

from . import hydra_errors
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


def _train_job(cfg, graphed_step: type | None = None) -> dict:
    """One Hydra job: typed config -> train() -> summary. Runs once per job in a multirun.
    ``graphed_step``: as ``train``'s (the tests' CPU stand-in for a CUDA graph)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from .train import train

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
        summary = train(train_cfg, run_dir, graphed_step=graphed_step)
    except Exception as e:
        _job_failed(e, run_dir, single=HydraConfig.get().mode == RunMode.RUN)
        raise
    _job_statuses.append(summary["status"])
    from .analysis.board import command

    finals = ", ".join(f"{k} {v:.4g}" for k, v in summary["final"].items() if v is not None and v == v)
    log.info("%s after %d steps: %s", summary["status"], summary["steps"], finals)
    log.info("run dir: %s", run_dir)
    if train_cfg.logger.tensorboard:
        log.info("watch:   %s", command(run_dir))
    return summary


def _failures() -> tuple:
    """A job's expected failures, first match wins: (exceptions, exit code of a single run, whether
    the run's status.json records it). Anything else is a bug: status.json names it, the traceback
    stays. (Imported here: the training runtime is slow to import for the CLI's other commands.)"""
    from .errors import WriteFailed
    from .train.checkpoint import ConfigMismatch
    from .train.run_lock import RunLocked

    # another process writes there, or the dir holds a run made with other settings: this command's
    # mistake, so nothing of that run is touched, status.json included
    return (((RunLocked, ConfigMismatch), EXIT_USER_ERROR, False),
            ((WriteFailed,), EXIT_WRITE_FAILED, True),  # a full disk: a clean stop, the checkpoint intact
            ((UserError,), EXIT_USER_ERROR, True))


def _job_failed(e: Exception, run_dir: Path, single: bool) -> None:
    """Record a failed job, write its status and say why: in a single run one line and the exit code
    (SystemExit); in a sweep a log line, and the caller re-raises so that the other jobs go on."""
    from .errors import WriteFailed
    from .recording.storage import write_json

    _job_statuses.append("failed")
    found = next(((code, keep) for types, code, keep in _failures() if isinstance(e, types)), None)
    line, status = str(e), {"status": "failed", "error": str(e)}
    if isinstance(e, WriteFailed):
        from .train.checkpoint import saved_step

        step = status["checkpoint_step"] = saved_step(run_dir)
        kept = f"the last checkpoint (step {step}, {run_dir}/checkpoint.pt) is intact" if step is not None else \
            "no checkpoint had been written yet"
        line = f"{e}; {kept}: free space, then rerun the same command to resume"
    elif found is None:
        status["error"] = f"{type(e).__name__}: {(str(e).splitlines() or [type(e).__name__])[0]}"
    if found is None or found[1]:
        with contextlib.suppress(WriteFailed):  # where it can still be written
            write_json(run_dir / "status.json", status)
    if found is None:
        return
    if single:
        print(f"ics-study: error: {line}", file=sys.stderr)
        raise SystemExit(found[0]) from None
    log.error("%s", line)


def _one_gpu_per_parallel_job(cfg, hydra_cfg) -> None:
    """Parallel local jobs on a machine with several GPUs: job k trains on cuda:(k mod #GPUs)."""
    if cfg.trainer.device != "auto" or "joblib" not in str(hydra_cfg.launcher.get("_target_", "")):
        return
    import torch

    if torch.cuda.device_count() > 1:
        cfg.trainer.device = f"cuda:{hydra_cfg.job.num % torch.cuda.device_count()}"


def run_train(args: list[str], graphed_step: type | None = None) -> int:
    """``ics-study train ARGS``; ``graphed_step`` as ``train``'s (tests only)."""
    logging.raiseExceptions = False  # a log line that cannot be written (a full disk) must not print a traceback
    import hydra

    register_schemas()

    def job(cfg):
        return _train_job(cfg, graphed_step)

    main = hydra.main(version_base="1.3", config_path=hydra_config_path(), config_name="train")(job)
    saved_argv, saved_env = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = ["ics-study train", *map(hydra_errors.quote_home, args)]
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
        if e.filename is None or hydra_errors.one_line(e) is not None:
            print(f"ics-study: error: {hydra_errors.one_line(e) or e}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(f"ics-study: error: cannot write {e.filename} ({e.strerror}); set paths.results_dir "
              "(or hydra.run.dir / hydra.sweep.dir) to a writable folder", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as e:
        line = hydra_errors.one_line(e)
        if not _job_statuses:  # before any job started: the overrides themselves
            line = hydra_errors.malformed(args, e, line)
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
        line = hydra_errors.malformed(args, e, hydra_errors.one_line(e))
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
