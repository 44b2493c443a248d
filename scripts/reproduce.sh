#!/usr/bin/env bash
# Regenerate results/reference/: every figure (1, 2, 3, 4, 8, the l_p and the deep-linear-network
# figures), claims.csv, results.csv and the report, at CPU scale, on real CIFAR-10.
#
#   scripts/reproduce.sh DATA_ROOT [OUT_DIR]
#
# DATA_ROOT holds cifar-10-batches-py/ (offline here: python ../shared/data/cifar10/build.py DATA_ROOT).
# CPU scale (scale=cpu_small): VGG-16 at width 1/4, 2,000 steps, batch 128, histograms, ICS and the
# landscape every 50 steps; the DLN at the paper's own scale (it is small). The sweeps (seeds as the
# presets set them):
#   paper   standard and BN at lr 0.01, 0.1, 0.5, 3 seeds, ICS and the landscape on  (18 runs: Figs 1, 3, 4)
#   noisy   noisy BN and the noise-only control at lr 0.1, 3 seeds                 (6 runs: Figs 2, 8)
#   lp      l1, l2, l_inf at lr 0.1, 3 seeds, the landscape on                      (9 runs: l_p figures)
#   dln     the deep linear network, 5 normalisations x 6 seeds, lr 1e-6 and 1e-7  (2 x 30 runs, fp32)
# and beyond the paper (issue 29; EXTENSIONS=0 skips them), lr 0.1, 3 seeds, beside the paper sweep's
# BN and standard runs; a training the paper or noisy sweep already holds is not run again (the noise
# and edge-of-stability presets record no activation probes: their figures and claims read metrics):
#   noise_strength     noisy BN at k = 0, 0.5, 2, 4 (k = 1: the noisy sweep)         (12 runs)
#   noise_granularity  (mu, sigma) per layer or position x redrawn every step, every 100 steps or
#                      held; per channel held for 100 steps or the run (every step: the noisy sweep) (24 runs)
#   normalisers        LN, GN, WS+GN, BN centring/scaling only, BN on running statistics, ICS and the
#                      landscape on                                                  (18 runs)
#   edge_of_stability  (issue 30) standard and BN at lr 0.02, 0.05, 0.1, 0.2, BN also at 0.5, the
#                      landscape and the curvature probe on (LN and GN: the preset, not run here) (27 runs)
# The DLN sweeps carry the curvature probe too (its Hessian has 2,500 rows: cheap), and no activation
# probes: its figure and claims read the metrics table only, and 10,000 steps of 25 layers' probes are
# 13 MB of tables a run.
# The paper, noisy and lp presets record the probes at two points (pre_relu and pre_norm).
# VGG runs use PRECISION (default bf16: 1.7-1.9x faster on a CPU with AMX/AVX512-BF16, and at fp32's
# speed on one without, through fp32's kernels: ics_study/train/precision.py; at this scale its
# verdicts agree with fp32 within seed noise, results/reference/bf16_cpu/); PRECISION=fp32 for the
# default precision (a new set, not the committed bf16 runs). The DLN always runs in fp32 (its summed loss is ~1e4). Sweeps run one after
# another, two runs of a sweep at a time (JOBS below); never a second process beside them: one more
# 2-thread run made a VGG run 3.5x slower (measured here). On the 2-core AMD EPYC here, the 2026-12-06 campaign's runs that nothing else slowed:
# 2.9-3.0 min per standard VGG run, 3.0-3.3 BN, 4.2-4.7 noisy BN, 3.3-3.4 l_p, 0.7-3.6 per DLN run
# (two at a time): about 3 h for the paper, about 6.5 h more for the extensions (54 runs of 3-4.5
# min, 27 of ~6-7 with the curvature probe), so it spans sessions on a machine whose processes end
# with them. On an AVX2-only AMD EPYC (bf16 through fp32's kernels) 2.5-4x as long: 8.1 min per BN
# run, ~11.5 per noisy BN run.
# Interrupted? Rerun the same command: finished runs return at once, the others resume.
# The runs go to OUT_DIR/runs (RUNS_DIR to choose), and results/reference/runs is committed: every
# run's tables, config and summary, without its checkpoint (5 MB a run at width 1/4). A finished run
# whose checkpoint is gone still returns at once where its config matches (the data root included:
# other data trains again), so a campaign that outlasts its machine resumes from what was committed.
# To redraw the figures and the report from the committed runs, without training: the last two
# commands below, with runs=results/reference/runs.
#
# The paper's full scale on one GPU (VGG-16 width 1, 15,000 steps), every figure:
#   ics-study train -m experiment=paper data.root=DATA_ROOT
#   ics-study train -m experiment=lp_norms data.root=DATA_ROOT
#   ics-study train -m experiment=dln
#   ics-study figures results/multiruns --out results/paper ; ics-study report results/multiruns --out results/paper
set -euo pipefail
data=${1:?usage: scripts/reproduce.sh DATA_ROOT [OUT_DIR]}
out=${2:-results/reference}
runs=${RUNS_DIR:-$out/runs}
precision=${PRECISION:-bf16}
here=$(dirname "$0")
# JOBS VGG runs at once (default 2), each on cores/JOBS threads: on the 2-core AVX2 AMD EPYC here two
# 1-thread runs train 1.29x (BN) and 1.12x (noisy BN) the steps per second of one 2-thread run
# (`python scripts/bench.py jobs`, side by side). JOBS=1: one at a time on every core.
jobs=${JOBS:-2}
parallel=()
if (( jobs > 1 )); then
  threads=$(( $(nproc) / jobs ))
  parallel=(launcher=local_parallel "hydra.launcher.n_jobs=$jobs" "trainer.threads=$(( threads > 0 ? threads : 1 ))")
fi
common=("data.download=false" logger.tensorboard=false trainer.progress_bar=false)
vgg=(scale=cpu_small "data.root=$data" "trainer.precision=$precision" "${common[@]}" "${parallel[@]}")
start=$(date +%s)
mkdir -p "$runs"

ics-study train -m experiment=paper model=vgg,vgg_bn "${vgg[@]}" "hydra.sweep.dir=$runs/paper"
ics-study train -m experiment=paper model=vgg_bn_noise,vgg_noise optim.lr=0.1 "${vgg[@]}" "hydra.sweep.dir=$runs/noisy"
ics-study train -m experiment=lp_norms model=vgg_lp1,vgg_lp2,vgg_lpinf "${vgg[@]}" "hydra.sweep.dir=$runs/lp"
# The DLN's 10x10 layers leave a second thread idle: the two sweeps run side by side, one thread each
# (measured here: a BN-DLN run 98-105 s so, 139-143 s alone on two threads).
pids=()
for lr in 1e-6 1e-7; do
  ics-study train -m experiment=dln optim.lr=$lr probe.enabled=false trainer.threads=1 "${common[@]}" "hydra.sweep.dir=$runs/dln_lr$lr" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done  # set -e: a failed sweep stops the script here
sweeps=(paper noisy lp dln_lr1e-6 dln_lr1e-7)
if [[ ${EXTENSIONS:-1} != 0 ]]; then
  ics-study train -m experiment=noise_strength model.noise.strength=0,0.5,2,4 "${vgg[@]}" "hydra.sweep.dir=$runs/noise_strength"
  ics-study train -m experiment=noise_granularity model.noise.granularity=layer,position "${vgg[@]}" \
    "hydra.sweep.dir=$runs/noise_granularity"
  ics-study train -m experiment=noise_granularity model.noise.granularity=channel model.noise.redraw_every=100,0 \
    "${vgg[@]}" "hydra.sweep.dir=$runs/noise_held"
  ics-study train -m experiment=normalisers "${vgg[@]}" "hydra.sweep.dir=$runs/normalisers"
  ics-study train -m experiment=edge_of_stability model=vgg,vgg_bn optim.lr=0.02,0.05,0.1,0.2 "${vgg[@]}" \
    "hydra.sweep.dir=$runs/edge_of_stability"
  ics-study train -m experiment=edge_of_stability model=vgg_bn optim.lr=0.5 "${vgg[@]}" "hydra.sweep.dir=$runs/eos_bn_lr0.5"
  sweeps+=(noise_strength noise_granularity noise_held normalisers edge_of_stability eos_bn_lr0.5)
fi
echo "all runs done in $(( ($(date +%s) - start) / 60 )) min" >&2

for sweep in "${sweeps[@]}"; do ics-study aggregate "$runs/$sweep"; done
ics-study figures "$runs" --out "$out" --format png,pdf
ics-study report "$runs" --out "$out" --notes "$here/../results/reference/NOTES.md"
