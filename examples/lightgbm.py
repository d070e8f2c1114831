"""LightGBM (JumpStart's training and responses) on scikit-learn's breast cancer data with the
sagemaker-lightgbm image.

Train on CSV (label first) with a validation channel, deploy, predict class probabilities from CSV
rows (plain and verbose JSON), batch-transform a CSV file, clean up.

    python examples/lightgbm.py                     # local mode (make image-lightgbm first)
    python examples/lightgbm.py --role ARN --bucket NAME --image-uri URI
"""

from __future__ import annotations

import json

import numpy as np
from helpers import parse_args, write_csv
from sagemaker.deserializers import JSONDeserializer
from sagemaker.estimator import Estimator
from sagemaker.inputs import TrainingInput
from sagemaker.serializers import CSVSerializer
from sklearn.datasets import load_breast_cancer

# From the image's `describe` ("metric_definitions"): `docker run sagemaker-lightgbm describe`.
METRICS = [{"Name": "validation:binary_logloss", "Regex": r"val's binary_logloss: ([0-9\.]+)"}]


def main(argv: list[str] | None = None) -> dict:
    setup, _ = parse_args("lightgbm", argv, __doc__)
    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    write_csv(setup.folder("train") / "train.csv", y[:400], x[:400])  # the target first
    write_csv(setup.folder("validation") / "validation.csv", y[400:480], x[400:480])
    test, test_y = x[480:], y[480:]
    write_csv(setup.folder("batch") / "batch.csv", test)

    estimator = Estimator(
        image_uri=setup.image_uri, role=setup.role, instance_count=1, instance_type=setup.instance_type,
        output_path=setup.output("model"), sagemaker_session=setup.session, metric_definitions=METRICS,
        hyperparameters={"num_boost_round": "100", "early_stopping_rounds": "10", "learning_rate": "0.1",
                         "metric": "binary_logloss"})
    estimator.fit({name: TrainingInput(setup.upload(setup.folder(name)), content_type="text/csv")
                   for name in ("train", "validation")})

    predictor = estimator.deploy(1, setup.instance_type, serializer=CSVSerializer(),
                                 deserializer=JSONDeserializer(), wait=setup.on_aws)
    try:
        answer = predictor.predict(test)  # {"probabilities-1d": [...], "probabilities": [[p0, p1], ...]}
        verbose = predictor.predict(test[:5], initial_args={"Accept": "application/json;verbose=true"})
    finally:
        predictor.delete_model()  # before the endpoint: it reads the endpoint's config
        predictor.delete_endpoint()
    accuracy = np.mean(np.argmax(answer["probabilities"], axis=1) == test_y)
    print(f"test accuracy: {accuracy:.3f}; verbose answer keys: {sorted(verbose)}")

    lines = setup.batch_transform(estimator, "batch.csv", content_type="text/csv", accept="application/jsonlines")
    return {"json": answer, "verbose": verbose, "transform": [json.loads(line) for line in lines],
            "labels": test_y, "metric_definitions": METRICS}


if __name__ == "__main__":
    main()
