"""k-NN classification of scikit-learn's iris flowers with the sagemaker-knn image.

Train on labelled recordIO-protobuf with the hyperparameters sagemaker.KNN sends, deploy, classify
rows with recordIO and CSV bodies, batch-transform a CSV file, clean up.

    python examples/knn.py                          # local mode (make image-knn first)
    python examples/knn.py --role ARN --bucket NAME --image-uri URI
"""

from __future__ import annotations

import json

import numpy as np
from helpers import builtin_hyperparameters, parse_args, write_csv, write_recordio
from sagemaker import KNN
from sagemaker.deserializers import JSONDeserializer, RecordDeserializer
from sagemaker.estimator import Estimator
from sagemaker.inputs import TrainingInput
from sagemaker.serializers import CSVSerializer, RecordSerializer
from sklearn.datasets import load_iris

RECORDIO = "application/x-recordio-protobuf"
# From the image's `describe` ("metric_definitions"): `docker run sagemaker-knn describe`.
METRICS = [{"Name": "test:accuracy", "Regex": r"#quality_metric: host=\S+, test accuracy <score>=(\S+)"}]


def main(argv: list[str] | None = None) -> dict:
    setup, _ = parse_args("knn", argv, __doc__)
    x, y = load_iris(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))  # the file is sorted by class
    x, y = x[order].astype(np.float32), y[order]
    (train, train_y), (test, test_y) = (x[:120], y[:120]), (x[120:], y[120:])
    write_recordio(setup.folder("train") / "train.rec", train, train_y)
    write_recordio(setup.folder("test") / "test.rec", test, test_y)
    write_csv(setup.folder("batch") / "batch.csv", test)

    estimator = Estimator(
        image_uri=setup.image_uri, role=setup.role, instance_count=1, instance_type=setup.instance_type,
        output_path=setup.output("model"), sagemaker_session=setup.session, metric_definitions=METRICS,
        hyperparameters=builtin_hyperparameters(KNN, setup, feature_dim=4, mini_batch_size=50, k=5,
                                                sample_size=120, predictor_type="classifier"))
    estimator.fit({name: TrainingInput(setup.upload(setup.folder(name)), content_type=RECORDIO)
                   for name in ("train", "test")})

    predictor = estimator.deploy(1, setup.instance_type, serializer=RecordSerializer(),
                                 deserializer=RecordDeserializer(), wait=setup.on_aws)
    try:
        records = predictor.predict(test)  # one Record per row, label "predicted_label"
        recordio_labels = [r.label["predicted_label"].float32_tensor.values[0] for r in records]
        predictor.serializer, predictor.deserializer = CSVSerializer(), JSONDeserializer()
        answer = predictor.predict(test)  # {"predictions": [{"predicted_label": 2.0}, ...]}
    finally:
        predictor.delete_model()  # before the endpoint: it reads the endpoint's config
        predictor.delete_endpoint()
    print(f"test accuracy: {np.mean(np.array(recordio_labels) == test_y):.3f}")

    lines = setup.batch_transform(estimator, "batch.csv", content_type="text/csv", accept="application/jsonlines")
    return {"recordio": recordio_labels, "json": answer, "transform": [json.loads(line) for line in lines],
            "labels": test_y, "metric_definitions": METRICS}


if __name__ == "__main__":
    main()
