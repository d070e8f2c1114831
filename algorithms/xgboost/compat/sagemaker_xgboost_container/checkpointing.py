"""`checkpointing.train(train_args, checkpoint_dir)` as in the SageMaker XGBoost image: xgb.train that resumes
from the newest `xgboost-checkpoint.<round>` in checkpoint_dir and writes one per round (the 5 newest kept,
never deleting a file SageMaker is uploading), printing the evaluation lines with the round count continued.
Files, rounds and printing are algorithm mode's (algorithms/xgboost/checkpointing.py, metrics.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import xgboost as xgb

from algorithms.xgboost.checkpointing import XGBoostCheckpoints
from algorithms.xgboost.metrics import format_line, print_line

log = logging.getLogger(__name__)


def train(train_args: dict[str, Any], checkpoint_dir: str | None) -> Any:
    """`xgb.train(**train_args)` with checkpoints; num_boost_round counts the rounds already checkpointed."""
    args = dict(train_args)
    store = XGBoostCheckpoints(Path(checkpoint_dir)) if checkpoint_dir else None
    latest = store.latest() if store is not None else None
    start = 0
    if latest is not None:
        start = latest[0] + 1
        args["xgb_model"] = bytearray(latest[1])
        log.info("Resuming from checkpoint xgboost-checkpoint.%d (round %d).", latest[0], start)
    args["callbacks"] = [*(args.get("callbacks") or []), _Checkpoint(store, start)]
    args["verbose_eval"] = False  # the callback prints, with the round count continued
    args["num_boost_round"] = max(0, args.get("num_boost_round", 10) - start)
    return xgb.train(**args)


class _Checkpoint(xgb.callback.TrainingCallback):
    """On rank 0 only: print the round's evaluation line, save the checkpoint."""

    def __init__(self, store: XGBoostCheckpoints | None, offset: int) -> None:
        super().__init__()
        self.store, self.offset = store, offset

    def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
        if xgb.collective.get_rank() != 0:
            return False
        number = epoch + self.offset
        scores = [(data, metric, float(values[-1][0] if isinstance(values[-1], tuple) else values[-1]))
                  for data, by_metric in evals_log.items() for metric, values in by_metric.items()]
        if scores:
            print_line(format_line(number, scores))
        if self.store is not None:
            self.store.save(number, bytes(model.save_raw("ubj")))
        return False
