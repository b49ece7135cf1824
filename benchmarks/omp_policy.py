"""``--omp-wait-policy`` for the CPU timing scripts: how idle OpenMP threads wait, set before torch starts them.

* ``default`` (the scripts' default): OpenMP as ``video-gn fit`` runs it. torch's libgomp spins a short while
  after each parallel region, then sleeps, so back-to-back ops find their threads awake.
* ``passive``: waiting threads sleep at once. Process CPU time then counts work only, which keeps it meaningful
  on a loaded machine, but every parallel region pays a thread wake-up (~70 µs measured on the 2-core Xeon),
  which weighs on code made of many small ops more than on the big convs.
* ``active``: waiting threads spin.

An explicit ``OMP_WAIT_POLICY`` in the environment is kept when the option is not given.
"""

from __future__ import annotations

import argparse
import os
import sys

POLICIES = ("default", "passive", "active")
HELP = (
    "how idle OpenMP threads wait (benchmarks/omp_policy.py): " + ", ".join(POLICIES) + "; default: default"
)


def add_option(parser: argparse.ArgumentParser) -> None:
    """Declare ``--omp-wait-policy`` on a script's parser (for ``--help`` and validation; :func:`apply` acts on it)."""
    parser.add_argument("--omp-wait-policy", choices=POLICIES, default="default", help=HELP)


def apply(argv: list[str] | None = None) -> str:
    """Set ``OMP_WAIT_POLICY`` from ``--omp-wait-policy`` in ``argv`` (default ``sys.argv``); return the policy.

    Must run before ``import torch``: OpenMP reads the variable once, when torch loads it. The option itself is
    validated again by each script's argparse.
    """
    argv = sys.argv[1:] if argv is None else argv
    chosen = None
    for i, arg in enumerate(argv):
        if arg == "--omp-wait-policy" and i + 1 < len(argv):
            chosen = argv[i + 1]
        elif arg.startswith("--omp-wait-policy="):
            chosen = arg.split("=", 1)[1]
    if chosen in ("passive", "active"):
        os.environ["OMP_WAIT_POLICY"] = chosen.upper()
    elif chosen == "default":
        os.environ.pop("OMP_WAIT_POLICY", None)
    return describe()


def describe() -> str:
    """The policy in effect, for a benchmark's header."""
    value = os.environ.get("OMP_WAIT_POLICY")
    return "default (libgomp: spin, then sleep)" if value is None else value.lower()
