"""Metric names the container knows, and their direction (docs/images/xgboost.md, "Metrics")."""

from __future__ import annotations

# Computed by the container from predictions; the rest are XGBoost's own.
CONTAINER_METRICS = ("accuracy", "balanced_accuracy", "f1", "f1_binary", "f1_macro", "mse", "precision",
                     "precision_macro", "precision_micro", "r2", "recall", "recall_macro", "recall_micro")
XGBOOST_METRICS = ("rmse", "rmsle", "mae", "mape", "mphe", "logloss", "error", "merror", "mlogloss", "auc",
                   "aucpr", "ndcg", "map", "poisson-nloglik", "gamma-nloglik", "cox-nloglik", "gamma-deviance",
                   "tweedie-nloglik", "aft-nloglik", "interval-regression-accuracy")
ALL_METRICS = frozenset(CONTAINER_METRICS + XGBOOST_METRICS)
THRESHOLD_METRICS = frozenset({"error", "ndcg", "map"})  # also written as name@t

MAXIMIZE = frozenset({"accuracy", "auc", "aucpr", "balanced_accuracy", "f1", "f1_binary", "f1_macro", "map",
                      "ndcg", "precision", "r2", "recall", "precision_macro", "precision_micro", "recall_macro",
                      "recall_micro"})


def maximize(metric: str) -> bool:
    return metric.split("@", 1)[0] in MAXIMIZE


# Published metric definitions: at most 40 per job (docs/images/xgboost.md, "Metrics").
GUIDE_OBJECTIVES = ("accuracy", "auc", "error", "f1", "logloss", "mae", "map", "merror", "mlogloss", "mse", "ndcg",
                    "rmse")
VALIDATION_ONLY = ("aucpr", "balanced_accuracy", "f1_binary", "f1_macro", "precision", "precision_macro",
                   "precision_micro", "r2", "recall", "recall_macro", "recall_micro", "rmsle", "mape",
                   "poisson-nloglik", "gamma-deviance", "tweedie-nloglik")
