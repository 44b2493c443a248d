#!/usr/bin/env python
"""ics-study's training loop against the loop a typical user writes, on the same hardware.

    python scripts/bench.py loop                                 # VGG-16-BN, batch 128, this machine's device
    python scripts/bench.py loop --data-root ~/.cache/ics-study/cifar10 --steps 100 --repeats 3
    python scripts/bench.py loop --quick                          # seconds; what the test suite runs

(a) reference: torchvision's CIFAR10 dataset with ToTensor/Normalize transforms, a shuffling
    DataLoader, the same VGG in eager fp32, SGD, ``loss.item()`` every step for the running loss;
(b) ics-study: ``train()`` at default probes (per-step channel moments, histograms every 100 steps),
    in fp32 and bf16 (on a GPU training steps replay CUDA graphs; ``eager`` is fp32 without
    them; ``nchw`` is fp32 in the NCHW layout; ``compile`` is bf16 + torch.compile; ``compile-graph``
    is fp32 + torch.compile captured in the CUDA graph: ``--variants ref,fp32,eager,nchw,compile``).
Runs alternate (a, b-fp32, b-bf16, a, ...) after a warm-up round; the table gives the median
training images/s of each and its ratio to the reference, over the whole run and "steady" (after
step min(50, steps/4): without cuDNN's autotuning at step 1 and the CUDA-graph captures, the rate a
long run such as the paper's 15,000 steps approaches). It adds the achieved TFLOP/s (the model's
multiply-adds counted by torch's FlopCounterMode for one forward and backward: VGG-16 at width 1 is
0.626 GFLOP forward per 32x32 image, 1.88 for a training step) and how close each loop comes to what
this machine's kernels allow for this network ("vs layers alone": its steady rate against forward +
backward through the same convolutions, pools and linear layers with nothing else, timed in the same
run, channels-last, in the row's precision; on a GPU replayed as a CUDA graph, like ics-study's
step, since launched one by one its kernels waited for Python). On a GPU it also gives the model FLOPs utilisation
against the datasheet's dense bf16 peak (MFU).
Without ``--data-root``, torchvision's FakeData (random PIL images) feeds the reference loop and
ics-study trains on its synthetic data: same shapes, same work.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from ics_study.compose import compose
from ics_study.models import build_model
from ics_study.train import train
from ics_study.train.precision import autocast, bf16_is_native
from ics_study.train.process import pick_device

from .common import alternate, median

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 tensor-core FLOP/s


def reference_loop(args, device: torch.device, steps: int, steady_after: int) -> tuple[float, float | None]:
    """The loop from a typical tutorial. Returns training images/s over the run and after ``steady_after``
    steps (``loss.item()`` waits for the device at every step, so both clocks read finished work)."""
    import torchvision
    import torchvision.transforms as T

    tf = T.Compose([T.ToTensor(), T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])
    if args.data_root:
        class CIFAR10(torchvision.datasets.CIFAR10):
            def _check_integrity(self) -> bool:  # the shared copy is re-encoded: its MD5s differ
                return True

            def _load_meta(self) -> None:  # likewise for batches.meta
                self.classes = [str(i) for i in range(10)]
                self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

        dataset = CIFAR10(str(Path(args.data_root).expanduser()), train=True, download=False, transform=tf)
    else:
        dataset = torchvision.datasets.FakeData(size=50_000, image_size=(3, 32, 32), num_classes=10, transform=tf)
    loader = torch.utils.data.DataLoader(dataset, batch_size=128, shuffle=True, num_workers=args.ref_workers,
                                         drop_last=True, pin_memory=device.type == "cuda")
    torch.manual_seed(0)
    model = build_model(compose([f"model={args.model}", f"model.width={args.width}"]).model).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = torch.nn.CrossEntropyLoss()
    model.train()
    running_loss, seen, mark = 0.0, 0, None
    start = time.perf_counter()
    for i, (images, labels) in enumerate(loader):
        if i == steps:
            break
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        seen += len(labels)
        if i + 1 == steady_after and steady_after < steps:
            mark = (seen, time.perf_counter())
    end = time.perf_counter()
    return seen / (end - start), (seen - mark[0]) / (end - mark[1]) if mark else None


def ics_study_loop(args, device: torch.device, steps: int, precision: str, compiled: bool, out: Path,
                   graph: str = "auto", extra: tuple[str, ...] = ()) -> tuple[float, float | None]:
    data = data_overrides(args.data_root)
    cfg = compose([f"model={args.model}", f"model.width={args.width}", f"trainer.max_steps={steps}",
                   f"trainer.eval_every={steps}", "trainer.progress_bar=false", f"trainer.steady_after={steady_after(steps)}", f"trainer.device={device}",
                   f"trainer.precision={precision}", f"trainer.compile={compiled}", f"trainer.cuda_graph={graph}",
                   *data, *extra, *args.overrides])
    summary = train(cfg, out)
    print(f"  ({precision}, compile={compiled}: CUDA graph used: {summary['cuda_graph']})", file=sys.stderr)
    return summary["train_images_per_s"], summary["steady_images_per_s"]


def training_flop_per_image(model: str, width: float) -> float:
    """FLOPs (2 per multiply-add) of one training step per image: forward and backward, counted."""
    from torch.utils.flop_counter import FlopCounterMode

    net = build_model(compose([f"model={model}", f"model.width={width}"]).model)
    with FlopCounterMode(display=False) as counter:
        net(torch.randn(2, 3, 32, 32)).sum().backward()
    return counter.get_total_flops() / 2


def layers_alone(model: str, width: float) -> torch.nn.Sequential:
    """The network's own convolutions, max-pools and linear layers (same modules, same shapes) and
    nothing else: the work its counted FLOPs stand for."""
    net = build_model(compose([f"model={model}", f"model.width={width}"]).model)
    kinds = (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.Flatten, torch.nn.Linear)
    return torch.nn.Sequential(*[m for m in net.modules() if isinstance(m, kinds)])


def layers_alone_images_per_s(model: str, width: float, device: torch.device, precision: str,
                              steps: int, batch: int = 128) -> float:
    """What this machine's convolution and matrix kernels allow for this network: images/s of
    forward + backward through ``layers_alone`` (channels-last, the row's precision, no BN, ReLU,
    loss, optimiser, data or probes), median of 3 timings of ``steps`` steps. Eager on a CPU; on a
    GPU one CUDA graph per step, as ics-study's loop (launched one by one, the kernels would wait
    for Python and bound nothing)."""
    net = layers_alone(model, width).to(device, memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with autocast(device, precision, cache=False):  # no weight cache: the step may be a CUDA graph
            out = net(x)
        out.float().sum().backward()

    if device.type == "cuda":
        step = as_cuda_graph(step, net)
    times = []
    for i in range(4):  # the first round warms up (oneDNN's primitives, cuDNN's autotuning)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(steps if i else 2):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            times.append(time.perf_counter() - t0)
    return batch * steps / statistics.median(times)


def as_cuda_graph(step, net: torch.nn.Module):
    """``step`` captured as one CUDA graph (PyTorch's recipe: warm up on a side stream, drop the
    gradients so that the graph allocates its own, capture); returns its replay, or ``step`` itself
    with a note on stderr if the capture fails."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        net.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        return graph.replay
    except RuntimeError as e:
        print(f"  (layers alone: CUDA graph capture failed, timed eagerly: {str(e).splitlines()[0]})", file=sys.stderr)
        return step


def data_overrides(root: str | None) -> list[str]:
    """The real CIFAR-10 copy at ``root`` (never downloaded), or the synthetic data without one."""
    return [f"data.root={root}", "data.download=false"] if root else ["data=synthetic"]


def steady_after(steps: int) -> int:
    """The steady rate starts after this step: past cuDNN's autotuning and the graph captures."""
    return max(1, min(50, steps // 4))


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="vgg_bn")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=None, help="steps per timed run (default 30 on CPU, 300 on GPU)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--ref-workers", type=int, default=2, help="DataLoader workers of the reference loop")
    ap.add_argument("--variants", default="ref,fp32,bf16",
                    help="comma list of ref, fp32, bf16, eager (fp32, no CUDA graph), nchw (fp32, NCHW), "
                         "nobias (fp32, model.conv_bias=false: the bias a BN cancels, not computed), compile (bf16 + compile), compile-graph (fp32 + compile, captured in the CUDA graph)")
    ap.add_argument("--quick", action="store_true", help="tiny model, 3 steps, 1 repeat: a smoke test")
    ap.add_argument("--json", default=None, help="also write the table's numbers here (scripts/targets.py reads it)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for the ics-study runs")
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    if args.quick:
        args.width, args.steps, args.repeats, args.ref_workers = 0.125, 3, 1, 0
    steps = args.steps or (300 if device.type == "cuda" else 30)

    # variant: (table label, precision, run(out) -> (images/s, steady images/s))
    known = {"ref": ("reference (DataLoader, eager fp32)", "fp32",
                     lambda out: reference_loop(args, device, steps, steady_after(steps))),
             "fp32": ("ics-study fp32 + probes", "fp32",
                      lambda out: ics_study_loop(args, device, steps, "fp32", False, out)),
             "bf16": ("ics-study bf16 + probes", "bf16",
                      lambda out: ics_study_loop(args, device, steps, "bf16", False, out)),
             "eager": ("ics-study fp32 + probes, eager (no CUDA graph)", "fp32",
                       lambda out: ics_study_loop(args, device, steps, "fp32", False, out, graph="off")),
             "nchw": ("ics-study fp32 + probes, NCHW layout (trainer.channels_last=false)", "fp32",
                      lambda out: ics_study_loop(args, device, steps, "fp32", False, out, extra=("trainer.channels_last=false",))),
             "nobias": ("ics-study fp32 + probes, no conv bias before BN (model.conv_bias=false)", "fp32",
                        lambda out: ics_study_loop(args, device, steps, "fp32", False, out, extra=("model.conv_bias=false",))),
             "compile": ("ics-study bf16 + probes + compile", "bf16",
                         lambda out: ics_study_loop(args, device, steps, "bf16", True, out)),
             "compile-graph": ("ics-study fp32 + probes + compile inside the CUDA graph (trainer.cuda_graph=on)", "fp32",
                               lambda out: ics_study_loop(args, device, steps, "fp32", True, out, graph="on"))}
    variants = args.variants.split(",")  # keys of ``known``, in table order; the first is the baseline
    unknown = [v for v in variants if v not in known]
    if unknown:
        sys.exit(f"bench.py: unknown variant(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    with tempfile.TemporaryDirectory() as tmp:
        def timed(v: str):
            def one(r: int) -> tuple[float, float | None]:
                rate, steady_rate = known[v][2](Path(tmp) / f"{r}_{v}")
                print(f"  round {r} {known[v][0]}: {rate:.0f} img/s (steady {steady_rate or 0:.0f})", file=sys.stderr, flush=True)
                return rate, steady_rate
            return one

        # round 0 warms up (not with --quick)
        both = alternate({v: timed(v) for v in variants}, args.repeats, warm_up=0 if args.quick else 1)
    rates = {v: [rate for rate, _ in pairs] for v, pairs in both.items()}
    steady = {v: [s for _, s in pairs] for v, pairs in both.items()}

    name_dev = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    threads = torch.get_num_threads()
    flop = training_flop_per_image(args.model, args.width)
    floor_steps = 2 if args.quick else (50 if device.type == "cuda" else 5)
    alone = {p: layers_alone_images_per_s(args.model, args.width, device, p, floor_steps)
             for p in sorted({known[v][1] for v in variants})}
    print(f"\n{args.model} width {args.width}, batch 128, {steps} steps/run, median of {args.repeats} alternating "
          f"runs; device {device} ({name_dev}, {threads} threads, native bf16: "
          f"{'yes' if bf16_is_native(device) else 'no, through fp32 kernels' if device.type == 'cpu' else 'no, emulated'}); torch {torch.__version__}; 'steady' = after "
          f"step {steady_after(steps)} (no autotuning, no graph capture); TFLOP/s from the steady rate and "
          f"{flop / 1e9:.3f} GFLOP per image and step (forward + backward, counted); 'vs layers alone': the "
          f"steady rate against forward + backward through the network's convolutions, pools and linear "
          f"layers alone, timed here: " + ", ".join(f"{r:.0f} img/s ({r * flop / 1e12:.3f} TFLOP/s) in {p}"
                                                     for p, r in alone.items()))
    peak = next((v for k, v in PEAK_BF16.items() if k in name_dev), None)

    ref, ref_steady = median(rates[variants[0]]), median(steady[variants[0]])
    head = "| loop | median img/s | vs first row | runs | steady img/s | steady vs first row | TFLOP/s | vs layers alone |"
    if device.type == "cuda":
        head += " MFU (bf16 peak) |"
    print(head + "\n" + "|---" * (head.count("|") - 1) + "|")
    for v, vals in rates.items():
        med, med_steady = median(vals), median(steady[v])
        row = f"| {known[v][0]} | {med:.0f} | {med / ref:.2f}x | {', '.join(f'{v:.0f}' for v in vals)} |"
        row += f" {med_steady:.0f} | {med_steady / ref_steady:.2f}x |" if med_steady and ref_steady else " - | - |"
        achieved = (med_steady or med) * flop
        row += f" {achieved / 1e12:.3f} | {(med_steady or med) / alone[known[v][1]]:.0%} |"
        if device.type == "cuda":
            row += f" {achieved / peak:.1%} |" if peak else " ? |"
        print(row)
    best = max(median(steady[v]) or median(vals) for v, vals in rates.items() if v != "ref")
    print(f"\nfig2 at the paper's scale (3 networks x 15,000 steps x 128 images) at the best steady ics-study rate: "
          f"{3 * 15000 * 128 / best / 60:.1f} min of training")
    if args.json:
        rows = [{"variant": v, "label": known[v][0], "images_per_s": median(vals), "runs": vals,
                 "steady_images_per_s": median(steady[v])} for v, vals in rates.items()]
        Path(args.json).write_text(json.dumps({"script": "bench.py loop", "device": device.type, "device_name": name_dev,
                                               "model": args.model, "width": args.width, "steps": steps,
                                               "repeats": args.repeats, "rows": rows}, indent=1))
