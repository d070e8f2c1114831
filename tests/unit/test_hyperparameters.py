"""The schema mechanism, and generic checks derived from every algorithm's declarations."""

from __future__ import annotations

import dataclasses

import pytest

from algorithms.kmeans.hyperparameters import KMeansHyperparameters
from common.constraints import AutoOr, Boolean, Choice, Integer, ListOf, Real
from common.errors import UserError
from common.hyperparameters import Hyperparameters, hp, parse_hyperparameters
from tests.conftest import all_algorithms


@dataclasses.dataclass(frozen=True)
class Toy(Hyperparameters):
    size: int = hp(Integer(1))
    rate: float = hp(Real(0, 1), 0.5)
    flag: bool = hp(Boolean(), False)
    mode: str = hp(Choice("a", "b"), "a")
    count: int | str = hp(AutoOr(Integer(1)), "auto")
    names: tuple[str, ...] = hp(ListOf(Choice("x", "y")), ("x",))
    aliases = {"learning_rate": "rate"}
    deprecated = {"silent": "use verbosity"}

    def check(self) -> list[str]:
        return ["size must be even when mode is 'b'"] if self.mode == "b" and self.size % 2 else []


def _valid_value(field: dataclasses.Field) -> str:
    constraint = field.metadata["constraint"]
    for candidate in ("1", "true", "auto", '["msd"]', "0.5"):
        try:
            constraint.parse(candidate)
            return candidate
        except ValueError:
            continue
    if isinstance(constraint, Choice):
        return constraint.options[0]
    if isinstance(constraint, ListOf) and isinstance(constraint.inner, Choice):
        return f'["{constraint.inner.options[0]}"]'
    raise AssertionError(f"no valid example for {field.name}")


def _minimal_valid(cls: type) -> dict[str, str]:
    return {f.name: _valid_value(f) for f in dataclasses.fields(cls) if f.metadata["required"]}


def test_sdk_encodings_are_accepted() -> None:
    parsed = parse_hyperparameters(Toy, {"size": "10.0", "rate": "1e-05", "flag": "True", "mode": '"b"',
                                         "count": "7", "names": "['x', 'y']"})
    assert parsed == Toy(size=10, rate=1e-05, flag=True, mode="b", count=7, names=("x", "y"))
    assert parse_hyperparameters(Toy, {"size": "2", "names": '["y", "x"]'}).names == ("y", "x")
    assert parse_hyperparameters(Toy, {"size": "2", "names": "[y, x]"}).names == ("y", "x")
    assert parse_hyperparameters(Toy, {"size": 4, "flag": False}).size == 4  # non-string JSON from local tests


def test_reserved_keys_ignored_and_aliases_and_deprecated() -> None:
    parsed = parse_hyperparameters(Toy, {"size": "2", "_tuning_objective_metric": "test:msd",
                                         "sagemaker_program": "x.py", "learning_rate": "0.1", "silent": "0"})
    assert parsed.rate == 0.1


def test_every_problem_reported_at_once_with_exact_text() -> None:
    with pytest.raises(UserError) as caught:
        parse_hyperparameters(Toy, {"rate": "2", "flag": "yes", "mode": "c", "sizee": "3", "colour": "red"})
    assert caught.value.message == (
        "Hyperparameter 'rate' has invalid value '2': must be a number in the range [0, 1]. "
        "Hyperparameter 'flag' has invalid value 'yes': must be true or false. "
        "Hyperparameter 'mode' has invalid value 'c': must be one of 'a', 'b'. "
        "Hyperparameter 'sizee' is not recognised; did you mean 'size'? "
        "Hyperparameter 'colour' is not recognised; allowed: count, flag, mode, names, rate, size. "
        "Hyperparameter 'size' is required: must be an integer in the range [1, inf)."
    )


def test_alias_and_name_together_is_an_error() -> None:
    with pytest.raises(UserError, match="'learning_rate' repeats 'rate'"):
        parse_hyperparameters(Toy, {"size": "2", "rate": "0.1", "learning_rate": "0.2"})


def test_cross_field_rule() -> None:
    with pytest.raises(UserError) as caught:
        parse_hyperparameters(Toy, {"size": "3", "mode": "b"})
    assert caught.value.message == "size must be even when mode is 'b'."


def test_kmeans_sdk_wire_map_and_hints() -> None:
    # What sagemaker.KMeans(k=10, ..., eval_metrics=["msd","ssd"]).hyperparameters() sends.
    parsed = parse_hyperparameters(KMeansHyperparameters, {
        "force_dense": "True", "k": "10", "feature_dim": "784", "mini_batch_size": "5000",
        "init_method": "kmeans++", "local_lloyd_max_iter": "100", "local_lloyd_tol": "0.01",
        "local_lloyd_num_trials": "3", "local_lloyd_init_method": "random", "half_life_time_size": "0",
        "epochs": "2", "extra_center_factor": "4", "eval_metrics": '["msd", "ssd"]'})
    assert (parsed.k, parsed.center_factor, parsed.num_trials, parsed.eval_metrics) == (10, 4, 3, ("msd", "ssd"))
    defaults = parse_hyperparameters(KMeansHyperparameters, {"k": "2", "feature_dim": "3"})
    assert (defaults.center_factor, defaults.num_trials, defaults.mini_batch_size) == (10, 10, 5000)
    with pytest.raises(UserError) as caught:
        parse_hyperparameters(KMeansHyperparameters, {"k": "2", "feature_dim": "3", "max_iterations": "5"})
    assert caught.value.message == "Hyperparameter 'max_iterations' is not recognised; did you mean " \
                                   "'local_lloyd_max_iter'?"


@pytest.mark.parametrize("algorithm", all_algorithms(), ids=lambda a: a.name)
def test_generic_invalid_values_rejected_naming_the_field(algorithm: type) -> None:
    schema = algorithm.Hyperparameters
    valid = _minimal_valid(schema)
    parse_hyperparameters(schema, valid)  # the minimal set itself is fine
    for field in dataclasses.fields(schema):
        for bad in field.metadata["constraint"].invalid_examples():
            with pytest.raises(UserError) as caught:
                parse_hyperparameters(schema, {**valid, field.name: bad})
            assert f"Hyperparameter '{field.name}' has invalid value '{bad}': must be " in caught.value.message


@pytest.mark.parametrize("algorithm", all_algorithms(), ids=lambda a: a.name)
def test_generic_required_and_unknown(algorithm: type) -> None:
    schema = algorithm.Hyperparameters
    valid = _minimal_valid(schema)
    for name in valid:
        with pytest.raises(UserError, match=f"Hyperparameter '{name}' is required"):
            parse_hyperparameters(schema, {k: v for k, v in valid.items() if k != name})
    with pytest.raises(UserError, match="Hyperparameter 'no_such_thing' is not recognised"):
        parse_hyperparameters(schema, {**valid, "no_such_thing": "1"})
