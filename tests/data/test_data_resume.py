"""Mid-epoch exact resume of the streamed pipeline: the Grain iterator's state through the run's Orbax checkpoint."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from sar_jax.core.config import load_config
from sar_jax.data.pipeline import build_datasets, make_loaders
from sar_jax.training import checkpointing


def test_mid_epoch_resume_with_workers_sees_the_uninterrupted_batches(tmp_path):
    config, _ = load_config("baseline", ["data.num_scenes=5", "data.scene_size=64", "data.patch_size=32",
                                         "data.stride=16", "train.batch_size=2", "data.workers=1",
                                         "data.prefetch=2", "data.sampling=random", "data.patches_per_epoch=22"])
    datasets = build_datasets(config)
    loader = make_loaders(datasets, config)["train"]
    config["data"]["workers"] = 0  # the uninterrupted reference in-process (the same batches: test_data_pipeline)
    straight = list(make_loaders(datasets, config)["train"].epoch(3))
    assert len(straight) == 11
    interrupted = loader.epoch(3)
    first = [next(interrupted) for _ in range(4)]
    manager = checkpointing.make_manager(tmp_path)
    checkpointing.save(manager, 4, {"step": jnp.int32(4)}, {"epoch": 2}, None, data_iterator=interrupted)
    interrupted.close()
    resumed = loader.epoch(3)
    checkpointing.restore_data_iterator(checkpointing.make_manager(tmp_path), 4, resumed)
    rest = list(resumed)
    assert len(first) + len(rest) == len(straight)
    for got, want in zip(first + rest, straight):
        np.testing.assert_array_equal(got, want)
