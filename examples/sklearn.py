"""Your own scikit-learn script on the sagemaker-sklearn image, through the SDK's SKLearn estimator.

examples/sklearn_code/train.py trains a random forest on scikit-learn's iris flowers and serves it
(model_fn, predict_fn); this script runs it: fit, deploy, predict from NPY, CSV and JSON bodies,
batch-transform a CSV file, clean up.

    python examples/sklearn.py                      # local mode (make image-sklearn first)
    python examples/sklearn.py --role ARN --bucket NAME --image-uri URI
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import parse_args, write_csv
from sagemaker.deserializers import CSVDeserializer, JSONDeserializer
from sagemaker.inputs import TrainingInput
from sagemaker.serializers import CSVSerializer, JSONSerializer
from sagemaker.sklearn import SKLearn
from sklearn.datasets import load_iris

CODE = Path(__file__).resolve().parent / "sklearn_code"
METRICS = [{"Name": "validation:accuracy", "Regex": r"validation-accuracy: ([0-9.]+)"}]  # what train.py prints


def main(argv: list[str] | None = None) -> dict:
    setup, _ = parse_args("sklearn", argv, __doc__)
    x, y = load_iris(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))  # the file is sorted by class
    x, y = x[order], y[order]
    write_csv(setup.folder("train") / "train.csv", y[:100], x[:100])
    write_csv(setup.folder("validation") / "validation.csv", y[100:125], x[100:125])
    test, test_y = x[125:], y[125:]
    write_csv(setup.folder("batch") / "batch.csv", test)

    estimator = SKLearn(
        entry_point="train.py", source_dir=str(CODE), framework_version="1.0-1", image_uri=setup.image_uri,
        role=setup.role, instance_count=1, instance_type=setup.instance_type, output_path=setup.output("model"),
        code_location=setup.code_location, sagemaker_session=setup.session, metric_definitions=METRICS,
        hyperparameters={"n_estimators": 50, "max_depth": 4})
    estimator.fit({name: TrainingInput(setup.upload(setup.folder(name)), content_type="text/csv")
                   for name in ("train", "validation")})

    predictor = estimator.deploy(1, setup.instance_type, wait=setup.on_aws)  # an SKLearnPredictor: NPY both ways
    try:
        npy = predictor.predict(test)  # predict_fn's rows: an array of [p0, p1, p2]
        predictor.serializer, predictor.deserializer = CSVSerializer(), JSONDeserializer()
        probabilities = predictor.predict(test)  # the same as JSON: [[p0, p1, p2], ...]
        predictor.serializer, predictor.deserializer = JSONSerializer(), CSVDeserializer()
        csv_rows = predictor.predict(test[:5])  # a JSON body in, CSV out: [["1.0", "0.0", "0.0"], ...]
    finally:
        predictor.delete_model()  # before the endpoint: it reads the endpoint's config
        predictor.delete_endpoint()
    print(f"test accuracy: {np.mean(np.argmax(probabilities, axis=1) == test_y):.3f}")

    lines = setup.batch_transform(estimator, "batch.csv", content_type="text/csv", accept="text/csv")
    return {"npy": npy, "json": probabilities, "csv": csv_rows, "labels": test_y, "metric_definitions": METRICS,
            "transform": [[float(v) for v in line.split(",")] for line in lines]}


if __name__ == "__main__":
    main()
