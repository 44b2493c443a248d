#!/usr/bin/env bash
# The whole GPU check as one command, in parts, sized to fit about 9 minutes:
#   tests    the CUDA tests (graphed == eager, also BN on running statistics, GroupNorm and a held noise
#            pair; bf16, resume, probes on a side stream in a real graph)
#   noise    the noisy BN's noise with the counter-based stream and torch's generator (is the counter one slower here?)
#   loop     the loop benchmark (reference vs ics-study: CUDA graph fp32/bf16; MFU, and the rate of
#            the convolutions alone, replayed as a CUDA graph)
#   compile  torch.compile inside the CUDA graph against the plain graph (fp32; compiles take minutes)
#   probes   the probe-cost benchmark (side stream on and off)
#   profile  a torch.profiler table of a probed run's steady steps
#   fig2     the full fig2 protocol (3 networks x 15,000 steps, batch 128, default probes, seed 0),
#            timed end to end, its runs packed (trimmed to what figures and reports read)
#   host     host-only benchmarks on this machine's CPU, in whatever time is left
# Prints tables and leaves them in OUT; last, one table of the issue's targets against what this check
# measured (scripts/targets.py OUT).
#
#   scripts/gpu_check.sh OUT_DIR [DATA_ROOT]
#
# Environment: PARTS (comma list, in the order above whatever its order; default
# tests,noise,loop,probes,profile,fig2,host), GPU_CHECK_SECONDS (budget, default 540), LOOP_VARIANTS
# (bench.py's variants, default ref,fp32,bf16,nchw), WITH_MEASUREMENTS=1 (ICS and landscape in the
# probe benchmark), DRY_RUN=1 (print the parts and stop).
# Through the device tool (at most 8 files come back from $OUT; the default parts took 477 s on an
# H200):
#   GPU_CHECK_SECONDS=545 LOOP_VARIANTS=ref,fp32,bf16 bash scripts/gpu_check.sh /tmp/gc /tmp/cifar10;
#   cp /tmp/gc/fig2_runs.tar.gz $OUT/; rm /tmp/gc/fig2_runs.tar.gz; tar czf $OUT/gc.tar.gz -C /tmp gc
# On a slower GPU the default parts may not all fit one 600 s call; the issue's targets first, the
# rest (and the fp32 levers side by side) in a second call:
#   1. PARTS=loop,fig2 LOOP_VARIANTS=ref,fp32,bf16 ...
#   2. PARTS=tests,loop,probes,compile,profile LOOP_VARIANTS=fp32,nobias,nchw ...
#
# On a GPU machine without a package index, carry the wheels in .whl/ (hydra-core, omegaconf, antlr4,
# pytest and its dependencies: ../shared/tools/offline-wheels.sh .whl pytest pluggy iniconfig
# packaging pygments) and, for real data, a copy of shared/data/cifar10 in .devdata/.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR [DATA_ROOT]}
budget=${GPU_CHECK_SECONDS:-540}  # everything below stops by then
parts=",${PARTS:-tests,noise,loop,probes,profile,fig2,host},"
for p in ${parts//,/ }; do
  case $p in tests|noise|loop|compile|probes|profile|fig2|host) ;;
    *) echo "gpu_check.sh: unknown part '$p' in PARTS; choose from tests,noise,loop,compile,probes,profile,fig2,host" >&2; exit 2 ;;
  esac
done
want() { [[ $parts == *",$1,"* ]]; }
parts=",$(echo "${parts//,/ }" | xargs | tr ' ' ','),"  # tidy: no empty entries
echo "parts: ${parts//,/ }"
if [ -n "${DRY_RUN:-}" ]; then exit 0; fi  # DRY_RUN=1: only say which parts would run
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1
data=${2:-/tmp/cifar10}
if [ -f .devdata/cifar10/build.py ]; then python3 .devdata/cifar10/build.py "$data" >/dev/null; fi
cli="python3 -m ics_study.cli"
real="data.root=$data data.download=false"
t0=$(date +%s)
stamp() { echo "== $1 ($(( $(date +%s) - t0 )) s)"; }
left() { echo $(( budget - ($(date +%s) - t0) )); }

in_budget() {  # in_budget SECONDS COMMAND...: under a timeout of SECONDS, or less if less is left
  local room=$(( $(left) - 5 ))
  if [ "$room" -lt 20 ] || [ "$1" -lt 20 ]; then echo "(skipped: $(left) s of the budget left)" >&2; return 124; fi
  timeout -k 10 $(( room < $1 ? room : $1 )) "${@:2}"
}

host_benches() {  # CPU only (what the GPU may wait for): last, in whatever time is left
  if [ "$(left)" -lt 60 ]; then echo "(host benchmarks skipped: $(left) s left)"; return; fi
  stamp "host work per step on this machine's CPU (no GPU involved: what the GPU may wait for)"
  timeout 50 python3 scripts/bench.py host-probes --repeats 3 2>>"$out/bench.log" | tee "$out/bench_probe_host.md"
  timeout $(( $(left) > 90 ? 90 : $(left) )) python3 scripts/bench.py host --steps 2000 --repeats 2 \
    2>>"$out/bench.log" | tee "$out/bench_loop_host.md"
}

stamp "device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/device.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/device.txt"

if want tests; then
  stamp "CUDA tests (graphed == eager, bf16, resume, probes on a side stream)"
  in_budget 210 python3 -m pytest -q -x -p no:cacheprovider -m "not slow" tests/unit/train/test_cuda_graph.py 2>&1 | tail -15 | tee "$out/cuda_tests.txt"
fi

if want noise; then
  stamp "noisy BN: the noise's cost with either stream (VGG-16 layer shapes, batch 128)"
  in_budget 60 python3 scripts/bench.py noise --device cuda --width 1 --steps 20 --repeats 3 2>>"$out/bench.log" | tee "$out/bench_noise.md"
fi

if want loop; then
  stamp "loop benchmark"
  in_budget 170 python3 scripts/bench.py loop --device cuda --data-root "$data" --steps 600 --repeats 2 --ref-workers 4 \
    --variants "${LOOP_VARIANTS:-ref,fp32,bf16,nchw}" --json "$out/bench.json" 2>>"$out/bench.log" | tee "$out/bench.md"
  grep -h "capture failed" "$out/bench.log" | head -3
fi

if want compile; then  # compiles take minutes
  stamp "torch.compile inside the CUDA graph vs the plain graph (fp32)"
  in_budget 240 python3 scripts/bench.py loop --device cuda --data-root "$data" --steps 600 --repeats 1 \
    --variants fp32,compile-graph 2>>"$out/bench.log" | tee "$out/bench_compile.md"
fi

if want probes; then
  stamp "probe cost (CUDA graph, fp32; side stream on and off)"
  # ICS and landscape costs were measured in the second session; WITH_MEASUREMENTS=1 adds them again
  in_budget 130 python3 scripts/bench.py probes --device cuda --data-root "$data" --width 1 --steps 1000 --repeats 2 \
    --side-stream-ab ${WITH_MEASUREMENTS:+--with-measurements} --json "$out/bench_probes.json" 2>>"$out/bench.log" \
    | tee "$out/bench_probes.md"
fi

if want profile; then
  stamp "profile: noisy BN, probes at defaults, CUDA graph (top kernels and host ops)"
  in_budget 90 python3 scripts/bench.py profile --device cuda --data-root "$data" --steps 200 --skip 100 \
    > "$out/profile.txt" 2>>"$out/bench.log"; head -3 "$out/profile.txt"
fi

if want fig2; then  # (not indented: its here-documents end at the start of a line)
stamp "fig2 at the paper's scale: 3 networks x 15,000 steps, default probes, seed 0"
rm -rf /tmp/fig2  # a fresh sweep: an earlier call's runs on a warm machine would be resumed, not timed
fig2_start=$(date +%s)
# at the budget, SIGTERM: the running job checkpoints and the sweep stops (SIGKILL 10 s later if not)
in_budget $(( $(left) - 25 )) $cli train -m experiment=fig2 hydra.sweeper.params.seed=0 $real trainer.progress_bar=false \
  hydra.sweep.dir=/tmp/fig2 > "$out/fig2.log" 2>&1
rc=$?
echo "fig2 wall time: $(( $(date +%s) - fig2_start )) s (exit $rc; 124 = stopped at the time budget)" | tee -a "$out/fig2.log"
python3 - /tmp/fig2 "$out/fig2.json" <<'PY' | tee "$out/fig2.md"
import json, pathlib, sys
print("| job | status | steps | train img/s | steady img/s | train time s | eval s | checkpoint s | train acc | test acc | graph |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
total, jobs = 0.0, []
for job in sorted(pathlib.Path(sys.argv[1]).glob("*/status.json")):
    s = json.loads((job.parent / "summary.json").read_text()) if (job.parent / "summary.json").exists() else None
    st = json.loads(job.read_text())
    jobs.append({"job": job.parent.name, "status": (s or st).get("status"), "steps": (s or st).get("steps")})
    if s is None:
        print(f"| {job.parent.name} | {st.get('status')} | {st.get('steps')} | | | | | | | | |")
        continue
    ckpt = s.get("checkpoint_time_s", 0.0)
    t = s["wall_time_s"] - s["eval_time_s"] - ckpt
    total += t
    f = s["final"]
    num = lambda v, spec: "-" if v is None else format(v, spec)  # an interrupted run has no test accuracy
    print(f"| {job.parent.name} | {s['status']} | {s['steps']} | {num(s['train_images_per_s'], '.0f')} | "
          f"{num(s.get('steady_images_per_s'), '.0f')} | {t:.0f} | {s['eval_time_s']:.0f} | {ckpt:.1f} | "
          f"{num(f['train_acc'], '.3f')} | {num(f['test_acc'], '.3f')} | {s.get('cuda_graph')} |")
print(f"\ntraining time of the jobs, in total: {total:.0f} s ({total / 60:.2f} min)")
pathlib.Path(sys.argv[2]).write_text(json.dumps({"script": "fig2", "jobs": jobs, "training_s": total}, indent=1))
PY

stamp "packing fig2 runs"
python3 - /tmp/fig2 "$out/fig2_runs.tar.gz" <<'PY'
# Keep what figures and reports read; trim per-channel rows to the rank-0 unit (the paper's).
import sys, tarfile, shutil, tempfile, pathlib
import pandas as pd
src, dst = pathlib.Path(sys.argv[1]), sys.argv[2]
tmp = pathlib.Path(tempfile.mkdtemp())
for run in sorted(src.glob("*/summary.json")):
    run = run.parent
    out = tmp / run.relative_to(src)
    out.mkdir(parents=True)
    for f in ("summary.json", "status.json", "config.yaml"):
        shutil.copy(run / f, out / f)
    (out / ".hydra").mkdir()
    shutil.copy(run / ".hydra" / "overrides.yaml", out / ".hydra" / "overrides.yaml")
    chans = pd.read_parquet(run / "probe_channels")
    rank0 = set(zip(chans[chans["rank"] == 0].layer, chans[chans["rank"] == 0].channel))
    for name in ("metrics", "probe_channels", "activations", "histograms"):
        df = pd.read_parquet(run / name)
        if name in ("activations", "histograms"):
            df = df[[(l, c) in rank0 or c == -1 for l, c in zip(df.layer, df.channel)]]
        (out / name).mkdir()
        df.to_parquet(out / name / "part-000001.parquet", index=False)
with tarfile.open(dst, "w:gz") as tar:
    tar.add(tmp, arcname="fig2_runs")
print("packed", len(list(tmp.glob("*/summary.json"))), "runs")
PY
du -sh /tmp/fig2 2>/dev/null | tee -a "$out/fig2.md"
fi  # fig2

if want host; then host_benches; fi
stamp "the issue's targets, from what this check measured"
python3 scripts/targets.py "$out" | tee "$out/targets.md"
stamp "done"
