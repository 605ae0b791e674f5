"""Run N train steps of a tiny model on a mesh and save losses and parameters (for the
distributed tests, which start this file in subprocesses with fake CPU devices)."""

from __future__ import annotations

import argparse
import os
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fake-devices", type=int, required=True)
    parser.add_argument("--meshes", default="4,1", help="device counts to run, in this process")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", required=True)
    parser.add_argument("--coordinator", default=None)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--initial-state", default=None,
                        help="npz of the initial train state: written if absent, else read (initialising "
                             "the model op by op costs ~9 s of CPU per process)")
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.fake_devices}"

    from sar_jax.training import distributed

    if args.coordinator:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id, args.timeout)
    with distributed.errors_stop_every_process():
        run(args)


def run(args: argparse.Namespace) -> None:
    import jax
    import numpy as np

    from sar_jax.core.config import load_config
    from sar_jax.nn.models import SARAutoencoder
    from sar_jax.training import distributed
    from sar_jax.training.state import compile_steps

    config = load_config("tiny", ["train.batch_size=8"])[0]
    rng = np.random.default_rng(0)
    data = np.repeat(rng.uniform(0, 1, (1, 8, 32, 32, 1)).astype(np.float32), args.steps, axis=0)
    model = SARAutoencoder.from_config(config["model"])
    initial = initial_state(model, config, args.initial_state)
    results = {}
    for n in [int(v) for v in args.meshes.split(",")]:
        mesh = distributed.make_mesh(n if n != jax.device_count() else "auto")
        steps = compile_steps(model, config)
        state = distributed.replicate(initial, mesh)
        losses = []
        for batch in data:
            local = np.array_split(batch, jax.process_count())[jax.process_index()]
            state, metrics = steps["train_step"](state, distributed.shard_batch(local, mesh))
            losses.append(distributed.scalar(metrics["loss"]))
        flat = jax.tree.leaves(distributed.local_copy((state.params, state.batch_stats)))
        results[f"loss_{n}"] = np.array(losses)
        results[f"params_{n}"] = np.concatenate([np.ravel(p) for p in flat])
    if jax.process_index() == 0:
        np.savez(args.out, **results)


def initial_state(model, config, path: str | None):
    """The train state before step 1 as numpy leaves (never donated), made (and saved to ``path``)
    or read from ``path``."""
    import functools
    from pathlib import Path

    import jax
    import numpy as np

    from sar_jax.training.state import create_train_state

    make = functools.partial(create_train_state, model, config)
    if path and Path(path).exists():
        stored = np.load(path)
        return jax.tree.unflatten(jax.tree.structure(jax.eval_shape(make)),
                                  [stored[f"leaf{i}"] for i in range(len(stored.files))])
    state = jax.tree.map(np.asarray, make())
    if path:
        np.savez(path, **{f"leaf{i}": np.asarray(v) for i, v in enumerate(jax.tree.leaves(state))})
    return state


if __name__ == "__main__":
    sys.exit(main())
