"""`policy-xai sanity`: model-randomisation sanity check of the attribution methods (Adebayo et al.)."""
from __future__ import annotations

import argparse

from ..resolve import SOURCE_HELP
from .checks import add_device_option, nonnegative_int, positive_float, positive_int

DEFAULT_METHODS = "dtd,rap,gbp,gradient,gradcam,guided_gradcam,g1gradcam,g2gradcam"


def register(sub) -> None:
    p = sub.add_parser(
        "sanity",
        help="model-randomisation sanity check: randomise layers from the top, see whether explanations change",
        description=(
            "Cascading model randomisation (Adebayo et al. 2018): the policy's layers are re-initialised "
            "one after the other from the top (output fc first, down to conv1) and after each step the "
            "same observations are explained again. Reported per method and step, against the original "
            "explanation: Spearman rank correlation and SSIM of the absolute image maps, and the rank "
            "correlation of the absolute configuration relevance. Writes sanity.csv and sanity.png into "
            "--out and prints a FLAG line for every method whose maps do not change (mean rank correlation "
            "above --threshold once every layer above the convs is randomised, or once all are). "
            "Without --inputs, synthetic observations (coloured blobs, random configurations) are used. "
            "A shipped spec name gives an untrained random network; it gets a sharp spatial softmax "
            "(temperature 0.02, override with --temperature) so that its feature points follow the image."
        ),
    )
    p.add_argument("--policy", default="small", help=f"the policy: {SOURCE_HELP} (default: small, untrained)")
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated (default: {DEFAULT_METHODS})")
    p.add_argument("--inputs", default="synthetic",
                   help="'synthetic' or an .npz recording with arrays images (N,H,W,3 uint8) and configs (N,D)")
    p.add_argument("--samples", type=positive_int, default=16,
                   help="number of observations (the first N of a recording)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random network, the inputs and the randomisation")
    p.add_argument("--layer", type=nonnegative_int, default=0,
                   help="conv layer of the Grad-CAM family (default 0 = first)")
    p.add_argument("--temperature", type=positive_float, default=None,
                   help="spatial softmax temperature (default: 0.02 for a random network, stored value for a file)")
    p.add_argument("--threshold", type=float, default=0.9, help="flag a method above this mean rank correlation")
    p.add_argument("--batch", type=positive_int, default=16, help="observations per explain() call")
    add_device_option(p)
    p.add_argument("--out", default="out/sanity", help="output folder")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="also write the rows of sanity.csv, the steps and the flags to this JSON file "
                        "(never overwritten)")
    p.set_defaults(func=run)


def print_table(res, metric: str, title: str) -> None:
    mean, std = res.mean(metric), res.std(metric)
    w = max(8, max(len(m) for m in res.methods))
    head = f"{'method':<{w}} " + " ".join(f"{s:>13}" for s in res.steps)
    print(f"\n{title}  (mean +- std over observations; column = randomised from the top down to ...)")
    print(head)
    print("-" * len(head))
    for i, m in enumerate(res.methods):
        print(f"{m:<{w}} " + " ".join(f"{mean[i, s]:>7.3f}+-{std[i, s]:<4.2f}" for s in range(len(res.steps))))


def save_plot(res, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import numpy as np

    from ..sanity import METRICS

    titles = {"image_spearman": "image map: Spearman rank corr. (|R|)",
              "image_ssim": "image map: SSIM (normalised |R|)",
              "config_spearman": "configuration: Spearman rank corr. (|R|)"}
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5.2 * len(METRICS), 4.2), sharey=True)
    x = range(len(res.steps))
    for ax, k in zip(axes, METRICS):
        mean, std = res.mean(k), res.std(k)
        for i, m in enumerate(res.methods):
            ax.plot(x, mean[i], marker="o", label=m)
            ax.fill_between(x, mean[i] - std[i], mean[i] + std[i], alpha=0.12)
        ax.axvline(res.head_step, color="grey", ls=":", lw=1)
        ax.set_xticks(list(x), ["orig."] + res.steps[1:], rotation=30)
        ax.set_title(titles[k], fontsize=10)
        ax.set_xlabel("randomised from the top down to")
        ax.set_ylim(min(-0.3, float(np.nanmin(mean)) - 0.1), 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("similarity to the original explanation")
    axes[-1].legend(fontsize=8, loc="lower left")
    fig.suptitle("Cascading model randomisation (dotted: every layer above the convs randomised)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    import csv
    from pathlib import Path

    import numpy as np
    import torch
    from tqdm import tqdm

    from ..attribution import parse_methods
    from ..sanity import policy_from_arg, run_sanity

    methods = parse_methods(args.methods)
    if args.samples < 2:
        raise ValueError("--samples must be at least 2")
    from . import checks

    out = Path(args.out)
    inputs = checks.policy_and_recording(args.inputs, args.policy, "--policy file")
    checks.guard_outputs(inputs, out, {n: out / n for n in ("sanity.csv", "sanity.png")})
    if args.json:
        checks.new_file(args.json, "--json", inputs)
    device = checks.device_arg(args.device)
    torch.manual_seed(args.seed)
    policy = policy_from_arg(args.policy, args.seed, args.temperature, device)
    checks.writable_dir(out)
    if args.inputs == "synthetic":
        from ..synthetic import synthetic_observations

        images, configs = synthetic_observations(policy.spec, args.samples, seed=args.seed)
    else:
        path = Path(args.inputs)
        if not path.is_file():
            raise FileNotFoundError(f"no such recording: {path}")
        try:
            data = np.load(path)
            images, configs = data["images"][: args.samples], data["configs"][: args.samples]
        except (KeyError, ValueError, OSError) as e:
            raise ValueError(f"{path}: needs arrays 'images' (N,H,W,3 uint8) and 'configs' (N,D): {e}") from e
    x, c = policy.prepare_image(images), policy.prepare_config(configs)
    from ..sanity import cascade_layers

    n_layers = len(cascade_layers(policy))
    with tqdm(total=len(methods) * (n_layers + 1), desc="sanity check", unit="explanation") as bar:
        def step(label):
            bar.set_postfix_str(label)
            bar.update()

        res = run_sanity(policy, x, c, methods, seed=args.seed, layer=args.layer, batch=args.batch, progress=step)

    rows = res.rows()
    with open(out / "sanity.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    save_plot(res, out / "sanity.png")

    print(f"policy {policy.spec.name!r} (softmax temperature {policy.softmax.temperature:g}), "
          f"{x.shape[0]} observations ({args.inputs}), seed {args.seed}")
    print_table(res, "image_spearman", "Image map, Spearman rank correlation of |R| with the original")
    print_table(res, "image_ssim", "Image map, SSIM of normalised |R| with the original")
    print_table(res, "config_spearman", "Configuration relevance, Spearman rank correlation of |R|")
    flags = res.flags(args.threshold)
    print()
    for line in flags:
        print(line)
    if not flags:
        print(f"no method flagged: every image map's mean rank correlation falls to <= {args.threshold} "
              f"once the layers above the convs are randomised")
    print(f"wrote {out / 'sanity.csv'} and {out / 'sanity.png'}")
    if args.json:
        import json

        Path(args.json).write_text(json.dumps({
            "policy": args.policy, "spec": policy.spec.name, "temperature": float(policy.softmax.temperature),
            "inputs": args.inputs, "samples": int(x.shape[0]), "seed": args.seed, "threshold": args.threshold,
            "methods": list(res.methods), "steps": list(res.steps), "head_step": res.head_step,
            "flags": flags, "rows": rows}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
