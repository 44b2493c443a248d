#!/usr/bin/env bash
# Regenerate results/reference/ : Figures 1, 2 and 8 and the report, at CPU scale, on real CIFAR-10.
#
#   scripts/reproduce.sh DATA_ROOT [OUT_DIR]
#
# DATA_ROOT holds cifar-10-batches-py/ (offline here: python ../shared/data/cifar10/build.py DATA_ROOT).
# CPU scale (scale=cpu_small): VGG-16 at width 1/4, 2,000 steps, batch 128, lr 0.1 (and 0.5 for
# Figure 1), 3 seeds. About 1 hour on 2 CPU cores (fp32); a few minutes on one GPU.
#
# The paper's full scale on one GPU (VGG-16 width 1, 15,000 steps), every figure:
#   ics-study train -m experiment=paper data.root=DATA_ROOT
#   ics-study train -m experiment=lp_norms data.root=DATA_ROOT
#   ics-study train -m experiment=dln
#   ics-study figures results/multiruns --out results/paper ; ics-study report results/multiruns --out results/paper
set -euo pipefail
data=${1:?usage: scripts/reproduce.sh DATA_ROOT [OUT_DIR]}
out=${2:-results/reference}
runs=${RUNS_DIR:-results/multiruns/reference}
common=(scale=cpu_small "data.root=$data" data.download=false logger.tensorboard=false trainer.progress_bar=false)

ics-study train -m experiment=fig1 "${common[@]}" "hydra.sweep.dir=$runs/fig1"
# Figure 2 needs the noisy-BN runs; the standard and BN runs at lr 0.1 are those of Figure 1.
ics-study train -m experiment=fig2 model=vgg_bn_noise "${common[@]}" "hydra.sweep.dir=$runs/fig2"
ics-study figures "$runs" --out "$out" --format png,pdf
ics-study report "$runs" --out "$out" --notes "$(dirname "$0")/reference_notes.md"
