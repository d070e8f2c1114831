"""k-means on scikit-learn's handwritten digits with the sagemaker-kmeans image.

Train on recordIO-protobuf with the hyperparameters sagemaker.KMeans sends, deploy, predict with
recordIO and CSV bodies, batch-transform a CSV file, clean up.

    python examples/kmeans.py                       # local mode (make image-kmeans first)
    python examples/kmeans.py --role ARN --bucket NAME --image-uri URI
"""

from __future__ import annotations

import json

import numpy as np
from helpers import builtin_hyperparameters, parse_args, write_csv, write_recordio
from sagemaker import KMeans
from sagemaker.deserializers import JSONDeserializer, RecordDeserializer
from sagemaker.estimator import Estimator
from sagemaker.inputs import TrainingInput
from sagemaker.serializers import CSVSerializer, RecordSerializer
from sklearn.datasets import load_digits

RECORDIO = "application/x-recordio-protobuf"
# From the image's `describe` ("metric_definitions"): `docker run sagemaker-kmeans describe`.
METRICS = [
    {"Name": "test:msd", "Regex": r"#quality_metric: host=\S+, test msd <loss>=(\S+)"},
    {"Name": "test:ssd", "Regex": r"#quality_metric: host=\S+, test ssd <loss>=(\S+)"},
    {"Name": "train:msd", "Regex": r"#quality_metric: host=\S+, train msd <loss>=(\S+)"},
]


def main(argv: list[str] | None = None) -> dict:
    setup, _ = parse_args("kmeans", argv, __doc__)
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    train, test = x[:1500], x[1500:]
    for name, rows in (("train", train), ("test", test)):
        write_recordio(setup.folder(name) / f"{name}.rec", rows)
    write_csv(setup.folder("batch") / "batch.csv", test)

    estimator = Estimator(
        image_uri=setup.image_uri, role=setup.role, instance_count=1, instance_type=setup.instance_type,
        output_path=setup.output("model"), sagemaker_session=setup.session, metric_definitions=METRICS,
        hyperparameters=builtin_hyperparameters(KMeans, setup, feature_dim=64, mini_batch_size=500, k=10,
                                                epochs=3, eval_metrics=["msd", "ssd"]))
    estimator.fit({name: TrainingInput(setup.upload(setup.folder(name)), content_type=RECORDIO)
                   for name in ("train", "test")})

    predictor = estimator.deploy(1, setup.instance_type, serializer=RecordSerializer(),
                                 deserializer=RecordDeserializer(), wait=setup.on_aws)
    try:
        records = predictor.predict(test[:20])  # one Record per row: closest_cluster, distance_to_cluster
        clusters = [int(r.label["closest_cluster"].float32_tensor.values[0]) for r in records]
        predictor.serializer, predictor.deserializer = CSVSerializer(), JSONDeserializer()
        answer = predictor.predict(test[:20])  # {"predictions": [{"closest_cluster": 3.0, "distance_to_cluster": ...}]}
    finally:
        predictor.delete_model()  # before the endpoint: it reads the endpoint's config
        predictor.delete_endpoint()
    print("closest clusters of the first test rows:", clusters)

    lines = setup.batch_transform(estimator, "batch.csv", content_type="text/csv", accept="application/jsonlines")
    return {"recordio_clusters": clusters, "json": answer, "transform": [json.loads(line) for line in lines],
            "labels": y[1500:], "metric_definitions": METRICS}


if __name__ == "__main__":
    main()
