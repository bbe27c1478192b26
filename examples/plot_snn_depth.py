#!/usr/bin/python3
"""Plots the output of snn_depth: mean and variance of the activations per
layer for SELU, ReLU and ReLU+BN (Debian's python3-matplotlib).

    python3 examples/plot_snn_depth.py snn_depth.csv snn_depth.png
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = {}
    with open(sys.argv[1], newline="") as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["activation"], []).append(
                (int(r["layer"]), float(r["mean"]), float(r["variance"])))
    labels = {"selu": "SELU", "relu": "ReLU", "relu_bn": "ReLU + BN"}
    fig, (am, av) = plt.subplots(1, 2, figsize=(11, 4))
    for act, pts in rows.items():
        layer = [p[0] for p in pts]
        am.plot(layer, [p[1] for p in pts], label=labels.get(act, act))
        av.plot(layer, [p[2] for p in pts], label=labels.get(act, act))
    am.set(xlabel="layer", ylabel="mean", title="Mean of the activations")
    av.set(xlabel="layer", ylabel="variance (log scale)", title="Variance of the activations", yscale="log")
    for a in (am, av):
        a.axhline(0 if a is am else 1, color="grey", lw=0.5, ls="--")
        a.legend()
    fig.suptitle("64 dense layers of width 512, LeCun-normal weights, standard-normal input")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=120)


if __name__ == "__main__":
    main()
