"""Factorization machines on scikit-learn's breast cancer data with the sagemaker-fm image.

Train a binary classifier on labelled recordIO-protobuf with the hyperparameters
sagemaker.FactorizationMachines sends, deploy, predict with recordIO and JSON bodies,
batch-transform a JSON Lines file, clean up.

    python examples/fm.py                           # local mode (make image-fm first)
    python examples/fm.py --role ARN --bucket NAME --image-uri URI
"""

from __future__ import annotations

import json

import numpy as np
from helpers import builtin_hyperparameters, parse_args, write_recordio
from sagemaker import FactorizationMachines
from sagemaker.deserializers import JSONDeserializer, RecordDeserializer
from sagemaker.estimator import Estimator
from sagemaker.inputs import TrainingInput
from sagemaker.serializers import JSONSerializer, RecordSerializer
from sklearn.datasets import load_breast_cancer

RECORDIO = "application/x-recordio-protobuf"
# From the image's `describe` ("metric_definitions"): `docker run sagemaker-fm describe`.
METRICS = [
    {"Name": "test:binary_classification_accuracy",
     "Regex": r"#quality_metric: host=\S+, test binary_classification_accuracy <score>=(\S+)"},
    {"Name": "test:binary_f_beta", "Regex": r"#quality_metric: host=\S+, test binary_f_1\.000 <score>=(\S+)"},
]


def main(argv: list[str] | None = None) -> dict:
    setup, _ = parse_args("fm", argv, __doc__)
    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x = ((x - x.mean(axis=0)) / x.std(axis=0))[order].astype(np.float32)  # FM wants features on one scale
    y = y[order]
    (train, train_y), (test, test_y) = (x[:450], y[:450]), (x[450:], y[450:])
    write_recordio(setup.folder("train") / "train.rec", train, train_y)
    write_recordio(setup.folder("test") / "test.rec", test, test_y)
    (setup.folder("batch") / "batch.jsonl").write_text("".join(json.dumps({"features": row.tolist()}) + "\n"
                                                               for row in test))

    estimator = Estimator(
        image_uri=setup.image_uri, role=setup.role, instance_count=1, instance_type=setup.instance_type,
        output_path=setup.output("model"), sagemaker_session=setup.session, metric_definitions=METRICS,
        hyperparameters=builtin_hyperparameters(FactorizationMachines, setup, feature_dim=30, mini_batch_size=50,
                                                num_factors=4, predictor_type="binary_classifier", epochs=20))
    estimator.fit({name: TrainingInput(setup.upload(setup.folder(name)), content_type=RECORDIO)
                   for name in ("train", "test")})

    predictor = estimator.deploy(1, setup.instance_type, serializer=RecordSerializer(),
                                 deserializer=RecordDeserializer(), wait=setup.on_aws)
    try:
        records = predictor.predict(test)  # one Record per row, labels "score" and "predicted_label"
        recordio_labels = [r.label["predicted_label"].float32_tensor.values[0] for r in records]
        predictor.serializer, predictor.deserializer = JSONSerializer(), JSONDeserializer()
        # {"predictions": [{"score": 0.98, "predicted_label": 1.0}, ...]}
        answer = predictor.predict({"instances": [{"features": row.tolist()} for row in test]})
    finally:
        predictor.delete_model()  # before the endpoint: it reads the endpoint's config
        predictor.delete_endpoint()
    print(f"test accuracy: {np.mean(np.array(recordio_labels) == test_y):.3f}")

    lines = setup.batch_transform(estimator, "batch.jsonl", content_type="application/jsonlines",
                                  accept="application/jsonlines")
    return {"recordio": recordio_labels, "json": answer, "transform": [json.loads(line) for line in lines],
            "labels": test_y, "metric_definitions": METRICS}


if __name__ == "__main__":
    main()
