"""Checkpoints of a LightGBM fit: the model text after a round, resumed as `init_model`, with early stopping's state.

A checkpoint is taken after a round when `Checkpoints.due()` (time, or SIGTERM), after early stopping has
looked at the round, and never after the last round. A restarted job trains the remaining rounds on top of
it; early stopping continues with the best score and round saved with it, so the stopping round and the
kept model are the uninterrupted job's. LightGBM draws its random samples (bagging_fraction and
feature_fraction below 1, goss, dart) from generators seeded when training starts and offers no way to restore
them, so with sampling the rounds after a restart are drawn afresh: a model as good, not the identical one.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from common import stopping
from common.algorithm import TrainingJob

log = logging.getLogger(__name__)


class Checkpointing:
    """The resumed model (if any) and the training callback that saves the next ones."""

    before_iteration = False

    def __init__(self, job: TrainingJob, state: list[Any], num_boost_round: int) -> None:
        # After log_evaluation (10) and early stopping (30); on the instance, or lgb.train sets one of its own.
        self.order = 40
        self.checkpoints, self.state, self.num_boost_round = job.checkpoints, state, num_boost_round
        self.early: Any = None
        self.rounds, self.model_text, saved = 0, None, None
        latest = self.checkpoints.latest(state)
        rounds = int(latest[1]["rounds"]) if latest else 0
        if job.collective.world_size > 1 and len(set(job.collective.allgather(rounds))) > 1:
            log.warning("The hosts' checkpoints are from different rounds; starting over.")
            latest = None
        if latest is not None:
            arrays, meta = latest
            self.rounds, self.model_text, saved = rounds, arrays["model"].tobytes().decode(), meta["early_stopping"]
            log.info("Resuming from the checkpoint after round %d of %d.", rounds, num_boost_round)
        self.saved_early_stopping = saved

    def init_model(self, lgb: Any, previous: str | None) -> Any:
        """The checkpoint's booster, else the model channel's file (or None)."""
        return lgb.Booster(model_str=self.model_text) if self.model_text is not None else previous

    def watch(self, early_stopping: Any) -> Any:
        """LightGBM's early stopping callback, continuing from the checkpoint's best score when resuming."""
        self.early = early_stopping
        saved, first_init = self.saved_early_stopping, early_stopping._init
        if saved is not None:
            def init(env: Any) -> None:  # the callback resets its state when training starts: restore it after
                first_init(env)
                kind = type(env.evaluation_result_list[0])  # EvalResult from lightgbm 4.7, a plain tuple before
                early_stopping.best_score, early_stopping.best_iter = saved["best_score"], saved["best_iter"]
                early_stopping.best_score_list = [[tuple(r) if kind is tuple else kind(*r) for r in results]
                                                  for results in saved["best_score_list"]]

            early_stopping._init = init
        return early_stopping

    def __call__(self, env: Any) -> None:
        rounds = self.rounds + env.iteration - env.begin_iteration + 1
        if rounds < self.num_boost_round and self.checkpoints.due():
            early = self.early
            kept = None if early is None or not early.enabled else {
                "best_score": early.best_score, "best_iter": early.best_iter,
                "best_score_list": [[list(r) for r in results] for results in early.best_score_list]}
            model = np.frombuffer(env.model.model_to_string(num_iteration=-1).encode(), np.uint8)
            self.checkpoints.save(rounds, {"model": model}, {"rounds": rounds, "early_stopping": kept,
                                                             "state": self.state},
                                  progress=f"round {rounds} of {self.num_boost_round}")
        stopping.check()
