"""Random Cut Forest anomaly scores with the sagemaker-rcf image: iris flowers plus a few odd ones.

Train on recordIO-protobuf with the hyperparameters sagemaker.RandomCutForest sends (a labelled test
channel gives the F1 metric), deploy, score rows with recordIO and CSV bodies, batch-transform a CSV
file, clean up.

    python examples/rcf.py                          # local mode (make image-rcf first)
    python examples/rcf.py --role ARN --bucket NAME --image-uri URI
"""

from __future__ import annotations

import json

import numpy as np
from helpers import builtin_hyperparameters, parse_args, write_csv, write_recordio
from sagemaker import RandomCutForest
from sagemaker.deserializers import JSONDeserializer, RecordDeserializer
from sagemaker.estimator import Estimator
from sagemaker.inputs import TrainingInput
from sagemaker.serializers import CSVSerializer, RecordSerializer
from sklearn.datasets import load_iris

RECORDIO = "application/x-recordio-protobuf"
# From the image's `describe` ("metric_definitions"): `docker run sagemaker-rcf describe`.
METRICS = [
    {"Name": "test:f1", "Regex": r"#quality_metric: host=\S+, test f1 <score>=(\S+)"},
    {"Name": "test:accuracy", "Regex": r"#quality_metric: host=\S+, test accuracy <score>=(\S+)"},
]


def main(argv: list[str] | None = None) -> dict:
    setup, _ = parse_args("rcf", argv, __doc__)
    flowers = load_iris().data.astype(np.float32)
    rng = np.random.default_rng(0)
    odd = (flowers.max(axis=0) * rng.uniform(1.8, 2.5, size=(10, 4))).astype(np.float32)  # far from every flower
    rows = np.vstack([flowers, odd])
    labels = np.r_[np.zeros(len(flowers)), np.ones(len(odd))]  # 1 = anomaly, for the test channel only
    write_recordio(setup.folder("train") / "train.rec", flowers)
    write_recordio(setup.folder("test") / "test.rec", rows, labels)
    write_csv(setup.folder("batch") / "batch.csv", rows)

    estimator = Estimator(
        image_uri=setup.image_uri, role=setup.role, instance_count=1, instance_type=setup.instance_type,
        output_path=setup.output("model"), sagemaker_session=setup.session, metric_definitions=METRICS,
        hyperparameters=builtin_hyperparameters(RandomCutForest, setup, feature_dim=4, mini_batch_size=1000,
                                                num_samples_per_tree=64, num_trees=50))
    estimator.fit({name: TrainingInput(setup.upload(setup.folder(name)), content_type=RECORDIO)
                   for name in ("train", "test")})

    predictor = estimator.deploy(1, setup.instance_type, serializer=RecordSerializer(),
                                 deserializer=RecordDeserializer(), wait=setup.on_aws)
    try:
        records = predictor.predict(rows)  # one Record per row, label "score"
        recordio_scores = [r.label["score"].float32_tensor.values[0] for r in records]
        predictor.serializer, predictor.deserializer = CSVSerializer(), JSONDeserializer()
        answer = predictor.predict(rows)  # {"scores": [{"score": 0.93}, ...]}
    finally:
        predictor.delete_model()  # before the endpoint: it reads the endpoint's config
        predictor.delete_endpoint()
    print(f"mean score: flowers {np.mean(recordio_scores[:150]):.3f}, odd rows {np.mean(recordio_scores[150:]):.3f}")

    lines = setup.batch_transform(estimator, "batch.csv", content_type="text/csv", accept="application/jsonlines")
    return {"recordio": recordio_scores, "json": answer, "transform": [json.loads(line) for line in lines],
            "labels": labels, "metric_definitions": METRICS}


if __name__ == "__main__":
    main()
