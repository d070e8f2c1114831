"""PCA: both solvers against numpy's SVD, hyperparameters, artifact (MXNet bytes), BYOM, predictions, errors."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA as SkPCA

from algorithms.pca import solvers
from algorithms.pca.algorithm import PCA
from algorithms.pca.hyperparameters import PCAHyperparameters
from common.cluster.collective import Collective
from common.data import content_types as ct
from common.data.batch import Batch
from common.data.content_types import MediaType
from common.data.recordio_writer import encode_dense
from common.errors import UserError
from common.hyperparameters import parse_hyperparameters
from common.paths import Paths
from common.serving.app import invoke
from common.training import run_training
from tools.local import write_job

NAN = (" is empty or NaN, and this algorithm needs a value in every field (only XGBoost, LightGBM and CatBoost "
       "read missing values); fill or drop it.")

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ndarray"
JSON = MediaType(ct.JSON)


def spectrum_data(rows: int, dim: int, rank: int, noise: float, offset: float = 3.0, seed: int = 0) -> np.ndarray:
    """A rank-`rank` signal with decaying scales plus isotropic noise, off-centre, float32."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, rank)))[0]
    signal = rng.standard_normal((rows, rank)) * np.linspace(10, 2, rank)
    return (signal @ basis.T + noise * rng.standard_normal((rows, dim)) + offset).astype(np.float32)


def blocks_of(x: np.ndarray | sp.csr_matrix, rows: int = 700) -> solvers.Blocks:
    return lambda epoch: (x[i:i + rows] for i in range(0, x.shape[0], rows))


def exact(x: np.ndarray | sp.csr_matrix, center: bool) -> tuple[np.ndarray, np.ndarray]:
    """Singular values (descending) and right singular vectors (columns) of the data, in float64."""
    dense = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)
    if center:
        dense = dense - dense.mean(axis=0)
    _, s, vt = np.linalg.svd(dense, full_matrices=False)
    return s, vt.T


# ---- hyperparameters ----------------------------------------------------------------------------
def test_sdk_wire_map_and_derived_sizes() -> None:
    # What sagemaker.PCA(num_components=10, algorithm_mode="randomized", subtract_mean=False).fit(record_set) sends.
    parsed = parse_hyperparameters(PCAHyperparameters, {
        "feature_dim": "784", "mini_batch_size": "500", "num_components": "10", "algorithm_mode": "randomized",
        "subtract_mean": "False", "_tuning_objective_metric": ""})
    assert (parsed.subtract_mean, parsed.extra_components, parsed.sketch_size) == (False, -1, 20)
    wide = parse_hyperparameters(PCAHyperparameters, {"feature_dim": "784", "mini_batch_size": "1",
                                                      "num_components": "50", "subtract_mean": "True"})
    assert (wide.algorithm_mode, wide.subtract_mean, wide.sketch_size) == ("regular", True, 100)
    capped = parse_hyperparameters(PCAHyperparameters, {"feature_dim": "12", "mini_batch_size": "1",
                                                        "num_components": "5", "extra_components": "0"})
    assert (capped.extra, capped.sketch_size) == (0, 5)
    assert parse_hyperparameters(PCAHyperparameters, {"feature_dim": "12", "mini_batch_size": "1",
                                                      "num_components": "5"}).sketch_size == 12


def test_hyperparameter_errors_are_exact() -> None:
    with pytest.raises(UserError) as caught:
        parse_hyperparameters(PCAHyperparameters, {"feature_dim": "4", "mini_batch_size": "10", "num_components": "5"})
    assert caught.value.message == "num_components=5 is larger than feature_dim=4; it can be at most feature_dim."
    with pytest.raises(UserError) as caught:
        parse_hyperparameters(PCAHyperparameters, {"feature_dim": "4", "mini_batch_size": "10", "n_components": "2",
                                                   "extra_components": "-2", "algorithm_mode": "Randomized"})
    assert caught.value.message == (
        "Hyperparameter 'n_components' is not recognised; did you mean 'num_components'? "
        "Hyperparameter 'extra_components' has invalid value '-2': must be an integer in the range [-1, inf). "
        "Hyperparameter 'algorithm_mode' has invalid value 'Randomized': must be one of 'regular', 'randomized'. "
        "Hyperparameter 'num_components' is required: must be an integer in the range [1, inf).")


# ---- regular mode: exact ------------------------------------------------------------------------
@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("sparse", [False, True])
def test_regular_equals_numpy_svd(center: bool, sparse: bool) -> None:
    if sparse:
        x = sp.random(3000, 60, density=0.02, random_state=1, format="csr", dtype=np.float32) * 10
    else:
        x = spectrum_data(3000, 40, 8, 0.5)
    fit = solvers.fit_regular(blocks_of(x), x.shape[1], 6, center, Collective())
    s, v = exact(x, center)
    assert np.all(np.diff(fit.s) >= 0), "ascending order"
    np.testing.assert_allclose(fit.s[::-1], s[:6], rtol=1e-9)
    cosines = np.abs(np.sum(fit.v[:, ::-1] * v[:, :6], axis=0))
    assert cosines.min() > 1 - 1e-9
    assert (fit.mean is not None) == center and fit.rows == 3000


def test_regular_matches_scikit_learn_signs_and_survives_a_large_offset() -> None:
    x = spectrum_data(4000, 30, 5, 0.3, offset=1e4)
    fit = solvers.fit_regular(blocks_of(x), 30, 5, True, Collective())
    reference = SkPCA(5, svd_solver="full").fit(x.astype(np.float64))
    np.testing.assert_allclose(fit.s[::-1], reference.singular_values_, rtol=1e-6)
    np.testing.assert_allclose(fit.v[:, ::-1].T, reference.components_, atol=1e-6)
    np.testing.assert_allclose(fit.mean, reference.mean_, rtol=1e-12)


# ---- randomized mode: approximate, memory O(d K) ---------------------------------------------------
@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("sparse", [False, True])
def test_randomized_recovers_the_top_subspace(center: bool, sparse: bool) -> None:
    x = spectrum_data(4000, 120, 10, 0.2)
    data = sp.csr_matrix(x) if sparse else x
    fit = solvers.fit_randomized(blocks_of(data), 120, 10, 20, center, Collective())
    s, v = exact(x, center)
    assert np.all(np.diff(fit.s) >= 0)
    assert subspace_angles(fit.v, v[:, :10]).max() < 1e-4
    np.testing.assert_allclose(fit.s[::-1], s[:10], rtol=1e-5)
    assert fit.rows_read == 4000 * (solvers.POWER_ITERATIONS + 1)


def test_randomized_accuracy_grows_with_extra_components() -> None:
    x = spectrum_data(2000, 200, 40, 3.0, seed=4)
    s, v = exact(x, True)
    errors = []
    for extra in (0, 40):
        fit = solvers.fit_randomized(blocks_of(x), 200, 20, 20 + extra, True, Collective())
        errors.append(subspace_angles(fit.v, v[:, :20]).max())
    assert errors[1] < errors[0] / 10, errors


def test_randomized_with_fewer_rows_than_the_sketch() -> None:
    x = spectrum_data(12, 50, 3, 0.1)
    fit = solvers.fit_randomized(blocks_of(x, 5), 50, 4, 30, True, Collective())
    s, v = exact(x, True)
    np.testing.assert_allclose(fit.s[::-1], s[:4], rtol=1e-6)


def test_a_sketch_as_wide_as_the_data_is_exact_in_one_pass() -> None:
    x = spectrum_data(500, 12, 12, 0.0)
    fit = solvers.fit_randomized(blocks_of(x), 12, 5, 12, True, Collective())
    s, v = exact(x, True)
    assert fit.rows_read == 500
    np.testing.assert_allclose(fit.s[::-1], s[:5], rtol=1e-9)


def test_too_few_rows_and_no_rows() -> None:
    x = spectrum_data(3, 10, 2, 0.1)
    for fit in (solvers.fit_regular, lambda *a: solvers.fit_randomized(a[0], a[1], a[2], 8, *a[3:])):
        with pytest.raises(UserError) as caught:
            fit(blocks_of(x), 10, 4, True, Collective())
        assert caught.value.message == "num_components=4 is larger than the number of training rows (3)."
        with pytest.raises(UserError, match="^The train channel holds no data rows.$"):
            fit(lambda epoch: iter(()), 10, 4, True, Collective())


# ---- artifact, bring-your-own-model, inference ------------------------------------------------------
def test_artifact_is_byte_identical_to_mxnet_and_round_trips(tmp_path: Path) -> None:
    s = np.array([1.5, 2.25, 7.0], np.float32)
    v = np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3)
    mean = np.arange(5, dtype=np.float32).reshape(1, 5) / 4
    PCA(s, v, mean).save(tmp_path)
    assert (tmp_path / "model_algo-1").read_bytes() == (FIXTURES / "pca_dict.nd").read_bytes()
    PCA(np.array([3.0, 4.0]), np.ones((4, 2))).save(tmp_path)
    assert (tmp_path / "model_algo-1").read_bytes() == (FIXTURES / "pca_dict_no_mean.nd").read_bytes()
    exported = PCA.load(tmp_path).export()
    assert list(exported) == ["s", "v"] and exported["v"].shape == (4, 2)


def test_model_made_by_mxnet_serves_as_is(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "pca_dict.nd", tmp_path / "model_algo-1")
    model = PCA.load(tmp_path)
    x = np.arange(10, dtype=np.float32).reshape(2, 5)
    expected = (x - np.arange(5) / 4) @ np.linspace(-1, 1, 15).reshape(5, 3)
    got = model.predict(Batch(x), JSON)["projection"]
    assert got.dtype == np.float32 and got.shape == (2, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    shutil.copy(FIXTURES / "pca_dict_no_mean.nd", tmp_path / "model_algo-1")
    sparse = sp.csr_matrix(np.array([[0, 2, 0, 1]], np.float32))
    assert PCA.load(tmp_path).predict(Batch(sparse), JSON)["projection"].tolist() == [[3.0, 3.0]]


def test_projection_order_follows_s_and_sparse_equals_dense(tmp_path: Path) -> None:
    x = spectrum_data(1000, 8, 3, 0.1)
    fit = solvers.fit_regular(blocks_of(x), 8, 3, True, Collective())
    model = PCA.from_fit(fit)
    projection = model.predict(Batch(x), JSON)["projection"]
    assert np.all(np.diff(projection.var(axis=0)) > 0)  # last column = largest singular value
    np.testing.assert_allclose(projection.var(axis=0) * len(x), model.s ** 2, rtol=1e-3)
    np.testing.assert_allclose(model.predict(Batch(sp.csr_matrix(x[:5])), JSON)["projection"], projection[:5],
                               rtol=1e-5)


def test_a_rows_projection_does_not_depend_on_the_rows_sent_with_it() -> None:
    # BLAS multiplies one row with another kernel than 200 (seen on AVX-512: a float32 answer one ulp apart), so
    # batch transform's SingleRecord and MultiRecord gave different bytes for the same row.
    x = spectrum_data(200, 6, 3, 0.1)
    model = PCA.from_fit(solvers.fit_regular(blocks_of(x), 6, 3, True, Collective()))
    together = model.predict(Batch(x), JSON)["projection"]
    alone = np.vstack([model.predict(Batch(x[i:i + 1]), JSON)["projection"] for i in range(len(x))])
    assert together.tobytes() == alone.tobytes()


def test_predict_errors_name_the_row() -> None:
    model = PCA(np.ones(2), np.eye(3)[:, :2], np.zeros(3))
    with pytest.raises(UserError) as caught:
        model.predict(Batch(np.zeros((1, 2), np.float32)), JSON)
    assert caught.value.message == "Row 1 of request has 2 features but the model's feature_dim is 3."
    with pytest.raises(UserError) as caught:
        invoke(model, b"0,0,0\n0,nan,0\n", "text/csv", None)
    assert caught.value.message.startswith("Row 2 of request, column 2 is empty or NaN")


@pytest.mark.parametrize(("arrays", "message"), [
    ({"s": np.ones(2)}, "model_algo-1 must hold the arrays 's' and 'v' (and 'mean' when the data was centered); "
                        "it holds ['s']."),
    ({"s": np.ones(3), "v": np.ones((4, 2))}, "model_algo-1 array 's' must hold 2 values, one per column of 'v'; "
                                              "got shape (3,)."),
    ({"s": np.ones(2), "v": np.ones((4, 2)), "mean": np.ones((1, 3))},
     "model_algo-1 array 'mean' must hold 4 values, one per row of 'v'; got shape (1, 3)."),
])
def test_malformed_artifacts_are_clear_errors(tmp_path: Path, arrays: dict, message: str) -> None:
    from common.data.ndarray_file import save_ndarrays

    save_ndarrays(tmp_path / "model_algo-1", {k: np.asarray(a, np.float32) for k, a in arrays.items()})
    with pytest.raises(UserError) as caught:
        PCA.load(tmp_path)
    assert caught.value.message == message


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="model_algo-1 is missing from the model directory"):
        PCA.load(tmp_path)


# ---- training in-process: metrics, errors, checkpoints ------------------------------------------------
def _train(base: Path, x: np.ndarray, hyperparameters: dict[str, str], test: np.ndarray | None = None) -> int:
    data = base.parent / "train.rec"
    data.write_bytes(encode_dense(x))
    channels = {"train": ([data], None)}
    if test is not None:
        test_file = base.parent / "test.csv"
        np.savetxt(test_file, test, delimiter=",")
        channels["test"] = ([test_file], "text/csv")
    write_job(base, {"feature_dim": str(x.shape[1]), "mini_batch_size": "100", **hyperparameters}, channels)
    return run_training(PCA, Paths(base))


def test_training_writes_ascending_artifact_and_test_metric(base_dir: Path, capsys: pytest.CaptureFixture) -> None:
    x = spectrum_data(2000, 12, 4, 0.5)
    assert _train(base_dir, x, {"num_components": "3"}, test=x[:500]) == 0
    model = PCA.load(base_dir / "model")
    assert model.s.shape == (3,) and model.v.shape == (12, 3) and model.mean.shape == (1, 12)
    s, v = exact(x, True)
    np.testing.assert_allclose(model.s, s[:3][::-1], rtol=1e-5)
    out = capsys.readouterr().out
    value = float(re.search(r"#test_score \(algo-1\) : \('reconstruction_error', (\S+)\)", out).group(1))
    assert value == pytest.approx(float(np.mean(model.squared_residuals(x[:500]))), rel=1e-6)
    assert "#progress_metric: host=algo-1, completed 100.0 % of epochs" in out


def test_training_errors_in_the_failure_file(base_dir: Path) -> None:
    assert _train(base_dir, spectrum_data(3, 4, 2, 0.1), {"num_components": "4", "algorithm_mode": "randomized"}) == 1
    assert (base_dir / "output" / "failure").read_text() == \
        "ClientError: num_components=4 is larger than the number of training rows (3)."
    x = spectrum_data(500, 4, 2, 0.1)
    x[213, 1] = np.nan
    assert _train(base_dir, x, {"num_components": "2"}) == 1
    assert (base_dir / "output" / "failure").read_text() == \
        "ClientError: Row 214 of train/train.rec, column 2" + NAN


def test_randomized_resumes_from_its_checkpoint(base_dir: Path, capsys: pytest.CaptureFixture) -> None:
    x = spectrum_data(1500, 30, 4, 0.2)
    hyperparameters = {"num_components": "3", "algorithm_mode": "randomized"}
    assert _train(base_dir, x, hyperparameters) == 0
    first = PCA.load(base_dir / "model")
    checkpoints = sorted((base_dir / "checkpoints").glob("*.npz"))
    assert [p.name for p in checkpoints] == ["checkpoint-00000001.npz", "checkpoint-00000002.npz"]
    checkpoints[-1].unlink()  # as if the job stopped during the third pass
    capsys.readouterr()
    assert _train(base_dir, x, hyperparameters) == 0
    out = capsys.readouterr().out
    assert "completed 25.0 %" not in out and "completed 75.0 % of epochs" in out
    np.testing.assert_allclose(PCA.load(base_dir / "model").v, first.v, atol=1e-6)


def test_regular_mode_refuses_a_scatter_matrix_larger_than_memory(base_dir: Path) -> None:
    x = spectrum_data(10, 4, 2, 0.1)
    data = base_dir.parent / "train.rec"
    data.write_bytes(encode_dense(x))
    write_job(base_dir, {"feature_dim": "4000000", "mini_batch_size": "10", "num_components": "2"},
              {"train": ([data], None)})
    assert run_training(PCA, Paths(base_dir)) == 1
    failure = (base_dir / "output" / "failure").read_text()
    assert re.fullmatch(r"ClientError: algorithm_mode=regular needs about 476837\.2 GiB for feature_dim=4000000 "
                        r"\(a 4000000 x 4000000 matrix\), more than this machine's \d+\.\d GiB; "
                        r"use algorithm_mode=randomized\.", failure), failure
