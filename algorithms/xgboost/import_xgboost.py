"""How algorithm mode imports XGBoost: without scikit-learn and pandas.

The image ships both for script mode (the seeds' training scripts import them), and XGBoost imports them
when they are installed (1.5 s per process here) for its scikit-learn API and DataFrame input, which
algorithm mode never uses: it hands XGBoost numpy and scipy arrays. Every algorithm-mode module calls
`xgboost()` where it needs the library, never at import time, so the first import decides:

- algorithm-mode training and serving import it here, hidden from both (common.imports.without);
- script-mode serving imports the user's module (common/script_mode/serving.py) before any booster is loaded, so a
  model_fn that uses xgboost's scikit-learn API gets a normal import, and `xgboost()` returns that module;
- script-mode training runs the script in a child Python, untouched by this.

Once imported without them, the process keeps xgboost's view: its scikit-learn estimators refuse to work.
"""

from __future__ import annotations

from types import ModuleType

from common.imports import without

OPTIONAL = ("sklearn", "pandas")


def xgboost() -> ModuleType:
    """The xgboost module; imported without scikit-learn and pandas unless something imported it already."""
    with without(*OPTIONAL):
        import xgboost

    return xgboost
