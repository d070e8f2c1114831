"""XGBoost (SageMaker's built-in algorithm) with the sagemaker-xgboost image.

Default: a binary classifier on scikit-learn's breast cancer data: train on CSV (label first) with a
validation channel, deploy, predict from CSV rows (CSV and JSON answers), batch-transform a CSV file,
clean up. --old-notebook: the flow of a notebook written for SageMaker XGBoost 1.0-1 against the
image's 1.0-1 tag: libsvm digits in part files, multi:softmax, and a client that splits the one-line,
comma-joined CSV answer of that version.

    python examples/xgboost.py                      # local mode (make image-xgboost first)
    python examples/xgboost.py --old-notebook       # against sagemaker-xgboost:1.0-1
    python examples/xgboost.py --role ARN --bucket NAME --image-uri URI
"""

from __future__ import annotations

import argparse

import numpy as np
from helpers import parse_args, write_csv
from sagemaker.deserializers import CSVDeserializer, JSONDeserializer, StringDeserializer
from sagemaker.estimator import Estimator
from sagemaker.inputs import TrainingInput
from sagemaker.serializers import CSVSerializer, IdentitySerializer
from sklearn.datasets import load_breast_cancer, load_digits

# From the image's `describe` ("metric_definitions"): `docker run sagemaker-xgboost describe`.
NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def metrics(name: str) -> list[dict]:
    return [{"Name": f"{channel}:{name}", "Regex": rf".*\[[0-9]+\].*(?:#011|\t){channel}-{name}:{NUMBER}.*"}
            for channel in ("train", "validation")]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old-notebook", action="store_true", help="the 1.0-1 flow (default image: its tag)")
    setup, args = parse_args("xgboost", argv, __doc__, parser)
    if args.old_notebook:
        if not args.image_uri:
            setup.image_uri = "sagemaker-xgboost:1.0-1"
        return old_notebook(setup)
    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    write_csv(setup.folder("train") / "train.csv", y[:400], x[:400])  # the label first
    write_csv(setup.folder("validation") / "validation.csv", y[400:480], x[400:480])
    test, test_y = x[480:], y[480:]
    write_csv(setup.folder("batch") / "batch.csv", test)

    estimator = Estimator(
        image_uri=setup.image_uri, role=setup.role, instance_count=1, instance_type=setup.instance_type,
        output_path=setup.output("model"), sagemaker_session=setup.session, metric_definitions=metrics("auc"),
        hyperparameters={"objective": "binary:logistic", "num_round": "50", "max_depth": "3", "eta": "0.2",
                         "eval_metric": "auc"})
    estimator.fit({name: TrainingInput(setup.upload(setup.folder(name)), content_type="text/csv")
                   for name in ("train", "validation")})

    predictor = estimator.deploy(1, setup.instance_type, serializer=CSVSerializer(),
                                 deserializer=CSVDeserializer(), wait=setup.on_aws)
    try:
        rows = predictor.predict(test)  # [["0.98"], ["0.01"], ...]: one line per row
        predictor.deserializer = JSONDeserializer()
        answer = predictor.predict(test[:5])  # {"predictions": [{"score": 0.98}, ...]}
    finally:
        predictor.delete_model()  # before the endpoint: it reads the endpoint's config
        predictor.delete_endpoint()
    scores = [float(row[0]) for row in rows]
    print(f"test accuracy: {np.mean((np.array(scores) > 0.5) == test_y):.3f}")

    lines = setup.batch_transform(estimator, "batch.csv", content_type="text/csv", accept="text/csv")
    return {"csv": scores, "json": answer, "transform": [float(line) for line in lines],
            "labels": test_y, "metric_definitions": metrics("auc")}


def to_libsvm(labels: np.ndarray, values: np.ndarray) -> str:
    """The notebook's writer: `label index:value ...` with 1-based indices."""
    return "".join("{} {}\n".format(label, " ".join(f"{i + 1}:{v}" for i, v in enumerate(row)))
                   for label, row in zip(labels.tolist(), values.tolist()))


def old_notebook(setup) -> dict:
    x, y = load_digits(return_X_y=True)
    for name, rows, labels in (("train", x[:1400], y[:1400]), ("validation", x[1400:], y[1400:])):
        for part, (xs, ys) in enumerate(zip(np.array_split(rows, 5), np.array_split(labels, 5))):
            (setup.folder(name) / f"{name}-examples{part}").write_text(to_libsvm(ys, xs))

    estimator = Estimator(
        image_uri=setup.image_uri, role=setup.role, instance_count=1, instance_type=setup.instance_type,
        output_path=setup.output("model"), sagemaker_session=setup.session, metric_definitions=metrics("merror"),
        hyperparameters={"max_depth": "5", "eta": "0.2", "gamma": "4", "min_child_weight": "6", "silent": "0",
                         "objective": "multi:softmax", "num_class": "10", "num_round": "10"})
    estimator.fit({name: TrainingInput(setup.upload(setup.folder(name)), content_type="libsvm")
                   for name in ("train", "validation")})

    predictor = estimator.deploy(1, setup.instance_type, serializer=IdentitySerializer("text/x-libsvm"),
                                 deserializer=StringDeserializer(accept="text/csv"), wait=setup.on_aws)
    lines = to_libsvm(y[1400:], x[1400:]).splitlines()
    try:
        # The notebook's client: 100 rows a request, the answer split on commas.
        predictions = [float(p) for start in range(0, len(lines), 100)
                       for p in predictor.predict("\n".join(lines[start:start + 100])).split(",")]
        single = predictor.predict(lines[0])
    finally:
        predictor.delete_model()
        predictor.delete_endpoint()
    print(f"validation error rate: {np.mean(np.array(predictions) != y[1400:]):.3f}")
    return {"predictions": predictions, "single": single, "labels": y[1400:], "metric_definitions": metrics("merror")}


if __name__ == "__main__":
    main()
