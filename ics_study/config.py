"""Typed schemas of every config group.

These dataclasses are the single source of truth for what a config may contain. The CLI registers
them with Hydra's ConfigStore (``cli.py``), so a misspelt key or a value of the wrong type is refused
while the config is composed, before anything trains. Training code receives plain instances of
these classes (``OmegaConf.to_object``) and never sees Hydra.

Defaults are the paper's protocol (``../shared/docs/PROTOCOL.md``). Choices the paper does not state
are marked [I] (inferred) in a comment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MISSING = "???"


CUDA_GRAPH_SETTINGS = ("auto", "on", "off")  # trainer.cuda_graph


def cuda_graph_setting(value) -> str:
    """``trainer.cuda_graph`` as one of CUDA_GRAPH_SETTINGS (YAML reads on/off as booleans; they come back as such)."""
    return {"True": "on", "False": "off"}.get(str(value), str(value))


NOISY_NORMS = ("noisy_batch", "noise")  # the model.norm values that add NoiseConfig's noise
ABLATIONS = ("strength", "granularity", "redraw_every", "in_eval")  # NoiseConfig's options beyond the paper


@dataclass
class NoiseConfig:
    """Algorithm 1 of the paper: the noise injected after every BN layer of ``vgg_bn_noise``."""

    n_mu: float = 0.5  # per-step, per-channel shift mu_j ~ U(-n_mu, n_mu)
    n_sigma: float = 1.25  # per-step, per-channel scale sigma_j ~ U(1, n_sigma)
    r_mu: float = 0.1  # per-element shift m ~ U(mu_j - r_mu, mu_j + r_mu)
    r_sigma: float = 0.1  # per-element scale s ~ N(sigma_j, r_sigma); r_sigma is a std [I]
    # where the random numbers come from (the distribution is the same): "counter" (a counter-based
    # generator in one fused pass, ics_study/models/noise_stream.py; 3-4x cheaper on a CPU than torch's
    # serial one), "generator" (torch.Generator: Philox on a GPU, Mersenne twister on a CPU), or
    # "auto": counter on a CPU, generator on a GPU (registered with CUDA graphs). A seed gives one
    # trajectory per choice
    rng: str = "auto"
    # --- ablations beyond the paper (experiment=noise_strength, noise_granularity); the defaults are Algorithm 1
    # strength k: n_mu, n_sigma - 1, r_mu and r_sigma are scaled by k. 0 = plain BN (s = 1, m = 0), 1 = the paper
    strength: float = 1.0
    # who shares one (mu_t, sigma_t): "channel" (PROTOCOL.md's reading), "layer" (one pair per layer: the
    # other reading of Algorithm 1), "position" (one pair per (channel, h, w), shared by the batch's
    # samples [I]; a linear layer's positions are its channels). The per-element m, s stay per element
    granularity: str = "channel"
    # mu_t, sigma_t are redrawn every this many training steps: 1 = every step (the paper), K > 1 = held
    # for K steps, 0 = drawn once and held for the whole run (a constant shift). The per-element m, s are
    # fresh at every step whatever this says [I]. Held numbers are buffers: checkpointed, replayed by
    # the measurements
    redraw_every: int = 1
    # true: the noise also in evaluation mode (with BN's running statistics): test/* then measures the
    # noisy network as trained. Its per-element numbers come from an evaluation stream restarted at
    # every evaluation, so evaluations differ only by the weights [I]. false: the paper (noise off)
    in_eval: bool = False


@dataclass
class LpConfig:
    """l_p normalisation (Figures 5, 6, 12): the choices the paper leaves open [I]."""

    center: bool = True  # subtract the batch mean, like BN
    norm_of_centered: bool = False  # False: the l_p norm is taken of the un-centred activations (paper)
    # the "average l_p norm" is the power mean (mean |x|^p)^(1/p) over batch (and H, W), max |x| for
    # p = inf [I]: the only reading implemented, so it is not a switch (lp_norm.py)
    eps: float = 1e-5
    momentum: float = 0.1  # running mean / norm for evaluation, like BN


@dataclass
class ModelConfig:
    name: str = MISSING  # label used in run names and figures, e.g. "vgg_bn"
    arch: str = "vgg"
    depth: int = 16  # VGG: 11, 13, 16 or 19 (16: the paper plots a 13th normalised layer [I]); DLN: layers
    width: float = 1.0  # channel multiplier: 0.25 gives 16..128 channels
    # "none", "batch", "noisy_batch", "noise", "lp1", "lp2", "lpinf"; beyond the paper "layer", "group",
    # "ws_group", "batch_center", "batch_scale", "batch_running" (ics_study/models/norms.py)
    norm: str = "none"
    groups: int = 32  # GroupNorm (norm=group, ws_group): groups per layer, at most the layer's channels [I]
    num_classes: int = 10
    head_hidden: list[int] = field(default_factory=list)  # hidden Linear layers before the output [I]: none
    # conv layers keep a (zero-initialised) bias, also before BN [I]; false drops it: the same network
    # when a BN follows (its mean subtraction cancels a bias), a different one without BN
    conv_bias: bool = True
    bn_eps: float = 1e-5  # PyTorch defaults [I]
    bn_momentum: float = 0.1
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    lp: LpConfig = field(default_factory=LpConfig)
    features: int = 10  # DLN only: width of every square linear layer
    bias: bool = False  # DLN only: the paper's deep linear network has no biases [I]


@dataclass
class AugmentConfig:
    crop: bool = False  # random crop with zero padding; the paper trains without augmentation
    crop_padding: int = 4
    flip: bool = False  # random horizontal flip


@dataclass
class DataConfig:
    name: str = MISSING  # "cifar10", "synthetic" or "linear_regression"
    root: str = ""  # folder holding cifar-10-batches-py/ (or that folder itself)
    download: bool = True  # fetch the official archive (MD5-checked) if root has no data; false offline
    batch_size: int = 128
    eval_batch_size: int = 1000
    drop_last: bool = True  # every training step sees a full batch [I]; 390 steps per epoch
    normalize: bool = True  # per-channel mean/std of the training set [I]
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # synthetic data only
    num_train: int = 5000
    num_test: int = 1000
    image_size: int = 32
    noise_std: float = 48.0  # pixel noise (0..255 scale) around each class's template image
    # linear_regression only: y = A x, A a seeded Gaussian matrix, x ~ N(0, I)
    features: int = 10
    # l2 loss 0.5 * sum ||f(x) - y||^2 over the batch [I] ("sum" or "mean"). With "sum" over the 1000
    # samples, lr 1e-6 equals lr 1e-3 on the mean loss: this choice decides whether the paper's lr moves the DLN
    loss_reduction: str = "sum"


@dataclass
class OptimConfig:
    """Plain SGD at a constant learning rate, as in the paper."""

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0  # plain SGD [I]
    weight_decay: float = 0.0  # [I]


@dataclass
class TrainerConfig:
    max_steps: int = 15000  # the paper's 15k steps (about 38 epochs at batch 128)
    eval_every: int = 500  # full test-set evaluation every this many steps, and at the end
    log_every: int = 50  # device buffers are read back (one host sync) every this many steps
    device: str = "auto"  # "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", ...
    precision: str = "fp32"  # "fp32" or "bf16" (autocast); fp32 until the evidence says otherwise (docs/performance.md)
    channels_last: bool = True  # NHWC memory layout: same numbers, 1.1-1.3x faster on CPU and GPU
    compile: bool = False  # torch.compile the model (probes keep working: hooks are registered first)
    compile_mode: str = "default"  # "default", "reduce-overhead" (CUDA graphs), "max-autotune"
    cuda_graph: str = "auto"  # replay training steps as CUDA graphs: auto (on for CUDA), on, off
    threads: int = 0  # CPU threads for torch; 0 = every core
    reuse_host_memory: bool = True  # CPU runs: freed blocks >= 32 MB stay in the heap for reuse instead of
    # being unmapped and page-faulted in again (ics_study/train/host_memory.py; evaluation 1.3-1.7x faster); false = glibc's default
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)
    progress_bar: bool = True
    steady_after: int = 50  # summary's steady_images_per_s counts the steps after this one (not cuDNN's
    # autotuning at step 1 nor the CUDA-graph captures): the per-step rate that a long run approaches
    # checkpoint.pt in the run dir (model, optimiser, every RNG, table positions) every this many steps
    # and at the end; 0 = at the end only
    checkpoint_every: int = 1000
    resume: str = ""  # a run dir or checkpoint to continue (rerunning in the same run dir resumes by itself)
    # a run dir in use by another live process is refused at once (0), or after waiting this long for it
    # (launcher=slurm sets 120: a requeued task may start while the old one is still checkpointing)
    lock_wait_s: float = 0.0


@dataclass
class ProbeConfig:
    """Per-layer activation distributions (ics_study/probes/activations.py)."""

    enabled: bool = True
    # where to watch, one or more of: "pre_relu" (the norm's output: BN+noise in the noisy net, the conv
    # output without a norm), "pre_norm" (the conv output, before any norm: where BN does not pin the
    # moments), "post_relu". Each point costs its own statistics (the same sampled channels); the first
    # is the run's main point (TensorBoard tags without a prefix, the report's default).
    points: list[str] = field(default_factory=lambda: ["pre_relu"])
    channels_per_layer: int = 8  # sampled channels per layer, chosen by the run seed
    # what a sampled unit is: "channel" (a conv channel over N*H*W, as the paper's "activation" [I]) or
    # "position" (one (channel, h, w) position over the batch's N values: a single unit's distribution;
    # the position is drawn once per sampled channel from the seed, the same at every point and variant)
    unit: str = "channel"
    every: int = 100  # histograms and whole-layer summaries every this many steps
    batch: str = "train"  # "train" (the step's batch, as in the paper) or "fixed" (one held batch)
    # equal bins on each sampled channel's own [min, max] at that step, edges stored with the counts
    # (docs/measurements.md: fixed bins on [-8, 8] left the standard net's small activations in one bin)
    hist_bins: int = 64
    summary_sample: int = 4096  # values per layer used for the whole-layer quantiles
    tb_scalar_channels: int = 1  # TensorBoard scalars for the first k sampled channels (tables hold all)
    tb_every: int = 10  # ... at every tb_every-th step: a TensorBoard point costs ~0.1 ms of Python
    side_stream: bool = True  # in a CUDA graph, the probes' kernels run beside the step's (same numbers)


@dataclass
class IcsConfig:
    """Internal covariate shift, Definition 2.1 (Figure 3): ||G - G'|| and cos(G, G') per layer."""

    enabled: bool = False  # costs one extra forward and backward per measured layer at each measurement
    every: int = 100
    layers: list[int] = field(default_factory=lambda: [5, 10])  # layer #k, 1-based (Figure 3 shows #5 and #10)


@dataclass
class LandscapeConfig:
    """Loss landscape along the gradient (Figure 4): L(w - eta g) and its gradient for eta on a grid."""

    enabled: bool = False  # costs one forward and backward per eta at each measurement
    every: int = 100
    eta_scales: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0])  # eta = scale x lr [I]
    eta_range: list[float] = field(default_factory=list)  # [lo, hi] x lr, log-spaced; replaces eta_scales
    eta_points: int = 8  # points of eta_range


@dataclass
class SharpnessConfig:
    """The loss's curvature (issue 30, ics_study/probes/curvature.py), on the step's batch at the
    landscape's weights (before the update), BN in training mode, in fp32: the top Hessian eigenvalue
    (Lanczos), the curvature along the gradient gT H g / |g|^2, and optionally tr(H)."""

    # costs ~2 training steps per Hessian-vector product: (iterations or fewer) + 1 + trace_samples of them
    enabled: bool = False
    every: int = 100
    iterations: int = 20  # Lanczos: at most this many H v products, warm-started from the last top vector [I]
    tol: float = 1e-3  # ... stopping once the top eigenvalue moves by less than this (relative) [I]
    trace_samples: int = 0  # Hutchinson's Rademacher vectors for tr(H); 0: no trace


@dataclass
class EvalConfig:
    """Test-set evaluation (ics_study/train/evaluation.py). Every run: evaluation mode, noise off, BN's
    running statistics (``test/acc``). Noisy-BN networks also get two more readings side by side."""

    noisy_modes: bool = True  # noisy nets: test_recalibrated/* and test_noise_on/* beside test/*
    # 0: at the last evaluation only; else every this many steps (a multiple of trainer.eval_every) [I].
    # Each costs ~recalibration_batches training-sized forward passes and two test-set passes.
    noisy_modes_every: int = 0
    recalibration_batches: int = 200  # clean training batches to re-estimate BN's statistics [I] ("a few hundred")


@dataclass
class LoggerConfig:
    tensorboard: bool = True  # events in the run dir: tensorboard --logdir results/
    tables: bool = True  # Parquet tables in the run dir: pandas.read_parquet(run_dir / "metrics")


@dataclass
class PathsConfig:
    # relative paths are relative to the directory ics-study runs in
    results_dir: str = "${oc.env:ICS_STUDY_RESULTS,results}"  # runs/, multiruns/ (configs/hydra/default.yaml)
    data_dir: str = "${oc.env:ICS_STUDY_DATA,data}"  # data=cifar10 looks in <data_dir>/cifar10


@dataclass
class TrainConfig:
    seed: int = 0  # seeds weights, data order, the noisy BN's noise and the probed channels
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    ics: IcsConfig = field(default_factory=IcsConfig)
    landscape: LandscapeConfig = field(default_factory=LandscapeConfig)
    sharpness: SharpnessConfig = field(default_factory=SharpnessConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
