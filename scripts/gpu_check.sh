#!/usr/bin/env bash
# The whole GPU check as one command: smoke run on CUDA, the loop benchmark (reference vs ics-study,
# fp32/bf16/compile, MFU), the probe-cost benchmark, then (time permitting) the CPU-scale reference
# sweeps. Prints tables and leaves them in OUT.
#
#   scripts/gpu_check.sh OUT_DIR [DATA_ROOT]
#
# On a GPU machine without a package index, carry the hydra wheels in .whl/ (see
# ../shared/tools/offline-wheels.sh) and, for real data, a copy of shared/data/cifar10 in .devdata/.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR [DATA_ROOT]}
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

stamp "device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/device.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/device.txt"

stamp "smoke: noisy BN on CUDA, real data, 200 steps"
$cli train model=vgg_bn_noise $real trainer.max_steps=200 trainer.eval_every=200 trainer.progress_bar=false \
  hydra.run.dir=/tmp/smoke 2>&1 | tail -2
cat /tmp/smoke/summary.json | tee "$out/smoke_summary.json" | grep -E '"(status|train_images_per_s|test_acc)"'

stamp "loop benchmark"
timeout 240 python3 scripts/bench.py --device cuda --data-root "$data" --steps 200 --repeats 3 --ref-workers 4 \
  2>"$out/bench.log" | tee "$out/bench.md"

stamp "torch.compile (bf16) against eager bf16"
timeout 120 python3 scripts/bench.py --device cuda --data-root "$data" --steps 200 --repeats 2 --variants bf16,compile \
  2>>"$out/bench.log" | tee "$out/bench_compile.md"

stamp "probe cost"
timeout 150 python3 scripts/bench_probes.py --device cuda --data-root "$data" --width 1 --steps 300 --repeats 3 \
  2>>"$out/bench.log" | tee "$out/bench_probes.md"

stamp "reference sweeps at CPU scale (fig1, fig2 fp32; fig2 bf16)"
common="scale=cpu_small $real logger.tensorboard=false trainer.progress_bar=false"
timeout ${REF_TIMEOUT:-240} bash -c "
  $cli train -m experiment=fig1 $common hydra.sweep.dir=/tmp/ref/fig1 > /tmp/ref_fig1.log 2>&1
  $cli train -m experiment=fig2 $common hydra.sweep.dir=/tmp/ref/fig2 > /tmp/ref_fig2.log 2>&1
  $cli train -m experiment=fig2 $common trainer.precision=bf16 hydra.sweep.dir=/tmp/ref/fig2_bf16 > /tmp/ref_fig2_bf16.log 2>&1
"
stamp "packing reference runs"
python3 - /tmp/ref "$out/reference_runs.tar.gz" <<'PY'
# Keep what figures and reports read; trim per-channel rows to the rank-0 unit (the paper's).
import sys, tarfile, shutil, tempfile, pathlib
import pandas as pd
src, dst = pathlib.Path(sys.argv[1]), sys.argv[2]
tmp = pathlib.Path(tempfile.mkdtemp())
for run in sorted(src.glob("*/*/summary.json")):
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
            keep = [(l, c) in rank0 or c == -1 for l, c in zip(df.layer, df.channel)]
            df = df[keep]
        (out / name).mkdir()
        df.to_parquet(out / name / "part-000001.parquet", index=False)
with tarfile.open(dst, "w:gz") as tar:
    tar.add(tmp, arcname="reference_runs")
print("packed", len(list(tmp.glob("*/*/summary.json"))), "runs")
PY
tail -3 /tmp/ref_*.log > "$out/ref_logs.txt" 2>/dev/null
stamp "done"
