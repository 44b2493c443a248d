"""The paper's claims as data: one ``Claim`` per checkable statement (``../shared/docs/PROTOCOL.md``).

A claim compares a per-run statistic (a column of ``aggregate.per_run``) of runs of variant ``a``
with runs of variant ``b`` at one learning rate, by one of the rules of ``verdicts.py``:

- ``higher`` / ``lower``: a's statistic is higher / lower than b's;
- ``about_equal``: a is within ``SIMILAR_OF_GAP`` of the b-vs-``ref`` gap of b (speed "about as fast as");
- ``not_lower``: a is not lower than b by more than ``tolerance`` (relative): "similar or larger";
- ``not_higher_by``: a is not higher than b by more than ``tolerance`` (absolute, e.g. a cosine);
- ``fails_trains``: every a run fails (diverged or below chance-level accuracy), every b run trains;
- ``at_least`` / ``at_most``: every run of a is at least / at most ``tolerance`` (an absolute level,
  such as "a cosine near 1"); b is not used;
- ``within_factor``: every run of a is within a factor ``tolerance`` of 1 (a ratio such as the
  curvature x lr / 2, where 1 is the edge of stability); b is not used.

Each claim is of a ``kind``: ``paper`` (a statement of the paper, counted in the report's headline),
``check`` (it follows from how a network or probe is built, so it tests our code, not the paper;
the report lists checks apart and never counts them as reproduced) or ``extension`` (a question
beyond the paper, issue 29: the noise's strength, granularity and persistence, BN's parts and other
normalisers; judged by the same rules, shown in the report's "Beyond the paper" section, never
counted with the paper's). An extension's ``paper`` field says what prompted the question. A claim may state
``requires``: preconditions on the runs of both sides (for example that both networks converged,
for a statement about converged networks); where one fails, the verdict is "not testable at this
scale" with the reason. ``about_equal`` verdicts also state the ordering beyond the seed spread.

Adding a claim is adding an entry below. Statistics (``aggregate.derived``; all per run):
``auc_train_acc`` mean batch training accuracy over the planned steps (speed, never an endpoint at
the ceiling; a diverged run's unrun steps count at the accuracy it recorded once diverged, so it
stays in a speed verdict as a slow run; every other statistic leaves diverged runs out, and a side
with none left reads "not measured (every ... run diverged)"); ``final_test_acc_last3`` test
accuracy averaged over the last 3 evaluations;
``mean/ics/...`` and ``mean/landscape/...`` means over the probed steps after step 1 (the
initialisation, where BN's ICS is ~10x its later value); ``settled/landscape/...`` the same after
the initial transient (``aggregate.TRANSIENT``: the first 10% of steps) with ``log_loss_range`` =
log10(loss_max / loss_min) (the paper's band is on a log axis) and ``gradpred_relative`` =
gradpred_max / ||grad L(w)||; ``drift/<point>/relative`` the sampled units' step-to-step mean
change relative to their spread (layers #2, #9, #13) at the probe point ``<point>``, and
``shift/<point>/w1_lag`` the Wasserstein-1 distance between their histograms ``probe.every`` steps
apart, over a fixed spread of each unit (``shift.py``: the whole distribution);
``auc/log10_train_loss`` the DLN's mean log training loss.
"""

from __future__ import annotations

from dataclasses import dataclass

# the tolerances of the "similar" rules, fixed before any data was looked at
SIMILAR_OF_GAP = 0.5  # "about as fast as": |a - b| <= 0.5 x |b - ref| (half the BN-vs-standard gap)
SIMILAR_RATIO = 0.2  # "similar or larger": a >= (1 - 0.2) x b
NOT_MUCH_RATIO = 0.5  # "not much more stable": a's drift >= (1 - 0.5) x b's
COSINE_MARGIN = 0.05  # "does not reduce ICS" in cosine: a's cos(G, G') <= b's + 0.05
NEAR_ONE_COSINE = 0.9  # [I] "almost no ICS": cos(G, G') at least 0.9 in every run
UNCORRELATED_COSINE = 0.3  # [I] "almost uncorrelated": cos(G, G') at most 0.3 in every run
FAIL_ACC, TRAIN_ACC = 0.2, 0.3  # "fails": final train acc < 0.2 (chance 0.1) or diverged; "trains": > 0.3
CONVERGED_ACC = 0.99  # [I] an endpoint claim (a statement about trained networks) needs this final train acc


@dataclass(frozen=True)
class Requires:
    """A precondition: every run of both sides has ``statistic`` >= ``minimum``."""
    statistic: str
    minimum: float
    text: str  # what it means, for the verdict's reason


CONVERGED = Requires("final_train_acc", CONVERGED_ACC, f"both networks to reach {CONVERGED_ACC:.0%} training accuracy")


@dataclass(frozen=True)
class Claim:
    id: str
    figure: str  # the figure file that shows it (fig1, fig2, ...)
    statement: str  # the paper's statement
    paper: str  # the paper's numbers, as it gives them
    statistic: str  # per-run column compared
    rule: str  # higher | lower | about_equal | not_lower | not_higher_by | fails_trains | at_least | at_most | within_factor
    a: str
    b: str  # "" for at_least / at_most
    lr: float = 0.1
    ref: str | None = None  # about_equal: the variant whose gap to b sets the tolerance
    tolerance: float = 0.0  # not_lower (relative), not_higher_by (absolute)
    note: str = ""  # what the comparison can and cannot show
    kind: str = "paper"  # paper | check (holds by construction: tests our code) | extension (beyond the paper)
    requires: tuple[Requires, ...] = ()  # unmet: "not testable at this scale"


SPEED = "auc_train_acc"
_STD, _BN, _NOISY, _NOISE_ONLY = "vgg", "vgg_bn", "vgg_bn_noise", "vgg_noise"
# Distribution stability is judged before the norm (``probe.point=pre_norm``): at the norm's output a
# BN channel's batch mean is beta and its variance gamma^2 at every step by construction, so there
# the measure reads how fast beta moves. That pinned reading is kept, as a check.
STABILITY = "shift/pre_norm/w1_lag"  # Wasserstein-1 between a unit's consecutive histograms, probe.every steps apart (shift.py)
PINNED = "drift/pre_relu/relative"

CLAIMS: list[Claim] = [
    # --- Figure 1 ---
    Claim("fig1.bn_faster", "fig1", "BN trains faster than the standard net",
          "BN far ahead until ~10k steps; both near 100% at the end", SPEED, "higher", _BN, _STD),
    Claim("fig1.bn_test_higher", "fig1", "BN's test accuracy is higher", "83% vs 80%",
          "final_test_acc_last3", "higher", _BN, _STD, requires=(CONVERGED,),
          note="a statement about converged networks: before both converge it restates speed"),
    Claim("fig1.lr05_std_fails_bn_trains", "fig1", "At lr 0.5 the standard net fails and the BN net trains",
          "standard ~10%, BN ~81% test accuracy", "final_train_acc", "fails_trains", _STD, _BN, lr=0.5),
    Claim("fig1.bn_not_more_stable", "fig1", "BN's activation distributions are not much more stable than the standard net's",
          "Figure 1c: no apparent stabilisation", STABILITY, "not_lower", _BN, _STD, tolerance=NOT_MUCH_RATIO,
          note="the layer inputs before the norm: Wasserstein-1 between a unit's histograms probe.every steps "
               "apart, over the unit's mean spread (the networks' activation scales differ by orders of magnitude)"),
    Claim("check.bn_output_pinned", "fig1", "BN pins each channel's batch mean and variance at its output",
          "(construction, not a claim of the paper)", PINNED, "lower", _BN, _STD, kind="check",
          note="at the norm's output the batch mean is beta: the drift reads how fast beta moves"),
    # --- Figure 2 / 8 ---
    Claim("fig2.noisy_as_fast_as_bn", "fig2", '"Noisy" BN trains about as fast as BN',
          "both ~100% train accuracy by 3-5k steps", SPEED, "about_equal", _NOISY, _BN, ref=_STD),
    Claim("fig2.noisy_faster_than_std", "fig2", '"Noisy" BN trains faster than the standard net',
          "standard needs 8-10k steps", SPEED, "higher", _NOISY, _STD),
    Claim("fig2.noise_alone_prevents_training", "fig2", "The same noise without BN prevents the standard net from training",
          "the paper's text (Section 2): the noisy standard net does not train", "final_train_acc", "fails_trains",
          _NOISE_ONLY, _STD, note="the control that shows the injected shift is large"),
    Claim("fig8.noisy_less_stable_than_bn", "fig8", '"Noisy" BN\'s distributions are the least stable: vs BN',
          "Figures 2 and 8: visibly less stable", PINNED, "higher", _NOISY, _BN, kind="check",
          note="after the noise, which is built to move the distribution every step"),
    Claim("fig8.noisy_less_stable_than_std", "fig8", '"Noisy" BN\'s distributions are the least stable: vs standard',
          "Figures 2 and 8: visibly less stable", PINNED, "higher", _NOISY, _STD, kind="check",
          note="after the noise, which is built to move the distribution every step"),
]

# --- Figure 3: ICS (Definition 2.1), layers #5 and #10, lr 0.1 and 0.01, both measures ---
for _lr in (0.1, 0.01):
    for _k in (5, 10):
        CLAIMS += [
            Claim(f"fig3.ics_l2.layer{_k}.lr{_lr:g}", "fig3", f"BN does not reduce ICS: ||G - G'||, layer #{_k}",
                  "BN similar or larger", f"mean/ics/layer{_k:02d}/l2_diff", "not_lower", _BN, _STD, lr=_lr,
                  tolerance=SIMILAR_RATIO),
            Claim(f"fig3.ics_cos.layer{_k}.lr{_lr:g}", "fig3", f"BN does not reduce ICS: cos(G, G'), layer #{_k}",
                  "BN's cosine similar or lower", f"mean/ics/layer{_k:02d}/cosine", "not_higher_by", _BN, _STD, lr=_lr,
                  tolerance=COSINE_MARGIN),
        ]

# --- Figure 4: the landscape along the gradient, lr 0.1, after the initial transient ---
_SETTLED = "after the first 10% of steps (aggregate.TRANSIENT), where the standard net's gradients are still vanishingly small"
CLAIMS += [
    Claim("fig4.loss_varies_less", "fig4", "With BN the loss varies less along the gradient",
          "BN's band far narrower (log axis)", "settled/landscape/log_loss_range", "lower", _BN, _STD,
          note=f"log10(max/min) of the loss along the gradient, {_SETTLED}"),
    Claim("fig4.gradient_more_predictive", "fig4", "With BN the gradient is more predictive",
          "up to two orders of magnitude early", "settled/landscape/gradpred_max", "lower", _BN, _STD,
          note=f"the paper's max ||grad L(w) - grad L(w')||, {_SETTLED}"),
    Claim("fig4.gradient_more_predictive_relative", "fig4", "With BN the gradient is more predictive, relative to its size",
          "up to two orders of magnitude early", "settled/landscape/gradpred_relative", "lower", _BN, _STD,
          note=f"the same over ||grad L(w)||: free of the two networks' gradient scales, {_SETTLED}"),
    Claim("fig4.beta_smoother", "fig4", "With BN the effective beta-smoothness is lower",
          "BN flat ~20, standard up to ~45", "settled/landscape/beta_smoothness", "lower", _BN, _STD,
          note=_SETTLED),
]

# --- l_p normalisations (Figures 5, 6, 12, 13) ---
for _p, _name in (("lp1", "l1"), ("lp2", "l2"), ("lpinf", "l_inf")):
    _v = f"vgg_{_p}"
    CLAIMS += [
        Claim(f"lp.{_p}.as_fast_as_bn", "fig_lp", f"{_name} normalisation trains about like BN", "Figure 5: close to BN",
              SPEED, "about_equal", _v, _BN, ref=_STD),
        Claim(f"lp.{_p}.faster_than_std", "fig_lp", f"{_name} normalisation trains faster than the standard net",
              "Figure 5", SPEED, "higher", _v, _STD),
        Claim(f"lp.{_p}.smoother", "fig_lp", f"{_name} normalisation smooths the landscape (beta-smoothness)",
              "Figure 12", "settled/landscape/beta_smoothness", "lower", _v, _STD, note=_SETTLED),
        Claim(f"lp.{_p}.not_stabilised", "fig_lp", f"{_name} normalisation does not stabilise the distributions",
              "Figure 6: non-Gaussian, not stabilised", STABILITY, "not_lower", _v, _STD,
              tolerance=NOT_MUCH_RATIO, note="the layer inputs before the norm"),
    ]

# --- the deep linear network (Figures 3b, 5b, 9, 10, 13), lr 1e-6 ---
CLAIMS += [
    Claim("dln.bn_faster", "fig_dln", "In the DLN, BN trains faster", "Figure 9", "auc/log10_train_loss", "lower",
          "dln_batch", "dln_none", lr=1e-6, note="speed = mean log10 training loss over the run"),
    Claim("dln.bn_smoother", "fig_dln", "In the DLN, BN smooths the landscape (beta-smoothness)", "Figure 13",
          "mean/landscape/beta_smoothness", "lower", "dln_batch", "dln_none", lr=1e-6),
]
# the DLN's ICS levels at both of the paper's learning rates (docs/measurements.md: which loss scale)
for _lr in (1e-6, 1e-7):
    for _k in (9, 17):
        CLAIMS += [
            Claim(f"dln.std_no_ics.layer{_k}.lr{_lr:g}", "fig_dln",
                  f"The standard DLN has almost no ICS: cos(G, G') near 1, layer #{_k}",
                  "Section 3 / Figure 3b: almost no ICS for the whole of training", f"mean/ics/layer{_k:02d}/cosine",
                  "at_least", "dln_none", "", lr=_lr, tolerance=NEAR_ONE_COSINE),
            Claim(f"dln.bn_uncorrelated.layer{_k}.lr{_lr:g}", "fig_dln",
                  f"With BN the DLN's G and G' are almost uncorrelated, layer #{_k}", "Section 3 / Figure 3b",
                  f"mean/ics/layer{_k:02d}/cosine", "at_most", "dln_batch", "", lr=_lr, tolerance=UNCORRELATED_COSINE),
        ]
for _k in (9, 17):
    CLAIMS += [
        Claim(f"dln.ics_l2.layer{_k}", "fig_dln", f"In the DLN, BN does not reduce ICS: ||G - G'||, layer #{_k}",
              "Figure 3b: BN similar or larger", f"mean/ics/layer{_k:02d}/l2_diff", "not_lower", "dln_batch", "dln_none",
              lr=1e-6, tolerance=SIMILAR_RATIO),
        Claim(f"dln.ics_cos.layer{_k}", "fig_dln", f"In the DLN, BN does not reduce ICS: cos(G, G'), layer #{_k}",
              "Figure 3b", f"mean/ics/layer{_k:02d}/cosine", "not_higher_by", "dln_batch", "dln_none", lr=1e-6,
              tolerance=COSINE_MARGIN),
    ]

# --- beyond the paper (issue 29), all at lr 0.1, against the paper preset's BN and standard runs ---
_EXT, _KS = "extension", (0.5, 2, 4)
_GRAIN = {"layer": "one pair per layer (the other reading of Algorithm 1)", "position": "one pair per (c, h, w)"}
_TIME = {"redraw_every=100": "held for 100 steps", "redraw_every=0": "held for the whole run (a constant shift)"}
CLAIMS += [
    Claim("ext.noise.k0_is_bn", "fig_noise_strength", "Noise of strength 0 is plain BN",
          "(construction: s = 1, m = 0)", SPEED, "about_equal", f"{_NOISY}[strength=0]", _BN, ref=_STD, kind="check"),
    *(Claim(f"ext.noise.k{k:g}.faster_than_std", "fig_noise_strength",
            f"Noisy BN at strength k = {k:g} still trains faster than the standard net",
            "the paper tests k = 1 only", SPEED, "higher", f"{_NOISY}[strength={k:g}]", _STD, kind=_EXT) for k in _KS),
    *(Claim(f"ext.noise.k{k:g}.as_fast_as_bn", "fig_noise_strength",
            f"Noisy BN at strength k = {k:g} trains about as fast as BN", "the paper tests k = 1 only", SPEED,
            "about_equal", f"{_NOISY}[strength={k:g}]", _BN, ref=_STD, kind=_EXT) for k in _KS),
    *(Claim(f"ext.noise.{g}_as_channel", "fig_noise_granularity",
            f"Noise with {text} trains about as fast as the per-channel noise", "Algorithm 1 read two ways",
            SPEED, "about_equal", f"{_NOISY}[granularity={g}]", _NOISY, ref=_STD, kind=_EXT)
      for g, text in _GRAIN.items()),
    *(Claim(f"ext.noise.{t.replace('=', '')}_as_fresh", "fig_noise_granularity",
            f"Noise whose (mu, sigma) are {text} trains about as fast as noise redrawn every step",
            "the paper redraws every step", SPEED, "about_equal", f"{_NOISY}[{t}]", _NOISY, ref=_STD, kind=_EXT)
      for t, text in _TIME.items()),
]
_NORMALISERS = {"vgg_ln": "LayerNorm", "vgg_gn": "GroupNorm", "vgg_ws_gn": "Weight standardisation + GroupNorm",
                "vgg_bn_center": "BN that only centres", "vgg_bn_scale": "BN that only scales",
                "vgg_bn_running": "BN with running statistics in training"}
_PROMPTS = {"vgg_ln": "Ba et al. 2016", "vgg_gn": "Wu and He 2018; Lubana et al. 2021",
            "vgg_ws_gn": "Qiao et al. 2019: claims a smoother landscape", "vgg_bn_center": "Kohler et al. 2019",
            "vgg_bn_scale": "Kohler et al. 2019", "vgg_bn_running": "Daneshmand et al. 2020: batch statistics"}
for _v, _name in _NORMALISERS.items():
    CLAIMS += [
        Claim(f"ext.norm.{_v}.faster_than_std", "fig_normalisers", f"{_name} trains faster than the standard net",
              _PROMPTS[_v], SPEED, "higher", _v, _STD, kind=_EXT),
        Claim(f"ext.norm.{_v}.as_fast_as_bn", "fig_normalisers", f"{_name} trains about as fast as BN",
              _PROMPTS[_v], SPEED, "about_equal", _v, _BN, ref=_STD, kind=_EXT),
        Claim(f"ext.norm.{_v}.smoother", "fig_normalisers", f"{_name} lowers the effective beta-smoothness",
              _PROMPTS[_v], "settled/landscape/beta_smoothness", "lower", _v, _STD, kind=_EXT, note=_SETTLED),
        Claim(f"ext.norm.{_v}.ics_l2", "fig_normalisers", f"{_name} does not reduce ICS: ||G - G'||, layer #10",
              "the paper's Figure 3 for BN", "mean/ics/layer10/l2_diff", "not_lower", _v, _STD,
              tolerance=SIMILAR_RATIO, kind=_EXT),
        Claim(f"ext.norm.{_v}.ics_cos", "fig_normalisers", f"{_name} does not reduce ICS: cos(G, G'), layer #10",
              "the paper's Figure 3 for BN", "mean/ics/layer10/cosine", "not_higher_by", _v, _STD,
              tolerance=COSINE_MARGIN, kind=_EXT),
        Claim(f"ext.norm.{_v}.not_stabilised", "fig_normalisers",
              f"{_name} does not stabilise the distributions before the norm", "the paper's Figure 1c for BN",
              STABILITY, "not_lower", _v, _STD, tolerance=NOT_MUCH_RATIO, kind=_EXT,
              note="the layer inputs before the norm, as for BN"),
    ]

# --- the edge of stability (issue 30): is "BN is smoother" a property of BN or of the learning rate? ---
EOS_LRS = (0.02, 0.05, 0.1, 0.2)  # the grid both networks train at (experiment=edge_of_stability)
EOS_FACTOR = 2.0  # [I] "near 2/lr": the settled curvature within a factor 2 of 2/lr, fixed before any data
_EOS = "after the first 10% of steps, times lr / 2: 1 is the edge of stability (Cohen et al. 2021)"
for _lr in EOS_LRS:
    for _v, _net in ((_BN, "BN"), (_STD, "the standard net")):
        CLAIMS += [
            Claim(f"ext.eos.{_v}.beta_near_edge.lr{_lr:g}", "fig_eos",
                  f"{_net}'s effective beta-smoothness sits near 2/lr", "Cohen et al. 2021; the paper's BN ~20 = 2/0.1",
                  "settled/landscape/beta_over_2_lr", "within_factor", _v, "", lr=_lr, tolerance=EOS_FACTOR,
                  kind=_EXT, note=_EOS),
            Claim(f"ext.eos.{_v}.top_near_edge.lr{_lr:g}", "fig_eos",
                  f"{_net}'s top Hessian eigenvalue sits near 2/lr", "Cohen et al. 2021 (full batch); batch sharpness",
                  "settled/sharpness/top_over_2_lr", "within_factor", _v, "", lr=_lr, tolerance=EOS_FACTOR,
                  kind=_EXT, note=_EOS),
            # SGD's own edge: the curvature along the step's gradient on its batch. Added once the
            # standard net's runs were in, under the factor fixed before any data (NOTES.md says so).
            Claim(f"ext.eos.{_v}.batch_sharpness_near_edge.lr{_lr:g}", "fig_eos",
                  f"{_net}'s curvature along the gradient (batch sharpness) sits near 2/lr",
                  "arXiv 2412.20553: SGD's batch sharpness hovers near 2/lr",
                  "settled/sharpness/gradient_curvature_over_2_lr", "within_factor", _v, "", lr=_lr,
                  tolerance=EOS_FACTOR, kind=_EXT, note=_EOS),
        ]
    CLAIMS += [
        Claim(f"ext.eos.std_top_above_edge.lr{_lr:g}", "fig_eos", "The standard net's top Hessian eigenvalue exceeds 2/lr",
              "the paper's spikes to ~45 at lr 0.1", "settled/sharpness/top_over_2_lr", "at_least", _STD, "", lr=_lr,
              tolerance=1.0, kind=_EXT, note=_EOS),
        Claim(f"ext.eos.bn_top_lower.lr{_lr:g}", "fig_eos", "At equal lr, BN's top Hessian eigenvalue is lower",
              "Ghorbani et al. 2019: no large outlier eigenvalues with BN", "settled/sharpness/top_eigenvalue", "lower",
              _BN, _STD, lr=_lr, kind=_EXT, note=_SETTLED),
    ]
CLAIMS += [
    Claim("ext.eos.dln_bn_top_lower", "fig_dln", "In the DLN, BN's top Hessian eigenvalue is lower",
          "Figure 13's smoothness, as curvature", "mean/sharpness/top_eigenvalue", "lower", "dln_batch", "dln_none",
          lr=1e-6, kind=_EXT, note="mean over the measured steps after step 1"),
]
