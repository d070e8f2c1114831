"""PCA on scikit-learn's handwritten digits with the sagemaker-pca image.

Train on recordIO-protobuf with the hyperparameters sagemaker.PCA sends, deploy, project rows with
recordIO and CSV bodies, batch-transform a CSV file, clean up.

    python examples/pca.py                          # local mode (make image-pca first)
    python examples/pca.py --role ARN --bucket NAME --image-uri URI
"""

from __future__ import annotations

import json

import numpy as np
from helpers import builtin_hyperparameters, parse_args, write_csv, write_recordio
from sagemaker import PCA
from sagemaker.deserializers import JSONDeserializer, RecordDeserializer
from sagemaker.estimator import Estimator
from sagemaker.inputs import TrainingInput
from sagemaker.serializers import CSVSerializer, RecordSerializer
from sklearn.datasets import load_digits

RECORDIO = "application/x-recordio-protobuf"
# From the image's `describe` ("metric_definitions"): `docker run sagemaker-pca describe`.
METRICS = [{"Name": "test:reconstruction_error", "Regex": r"#test_score \(\S+\) : \('reconstruction_error', (\S+)\)"}]


def main(argv: list[str] | None = None) -> dict:
    setup, _ = parse_args("pca", argv, __doc__)
    x = load_digits().data.astype(np.float32)
    train, test = x[:1500], x[1500:]
    for name, rows in (("train", train), ("test", test)):
        write_recordio(setup.folder(name) / f"{name}.rec", rows)
    write_csv(setup.folder("batch") / "batch.csv", test)

    estimator = Estimator(
        image_uri=setup.image_uri, role=setup.role, instance_count=1, instance_type=setup.instance_type,
        output_path=setup.output("model"), sagemaker_session=setup.session, metric_definitions=METRICS,
        hyperparameters=builtin_hyperparameters(PCA, setup, feature_dim=64, mini_batch_size=500, num_components=5,
                                                algorithm_mode="regular", subtract_mean=True))
    estimator.fit({name: TrainingInput(setup.upload(setup.folder(name)), content_type=RECORDIO)
                   for name in ("train", "test")})

    predictor = estimator.deploy(1, setup.instance_type, serializer=RecordSerializer(),
                                 deserializer=RecordDeserializer(), wait=setup.on_aws)
    try:
        records = predictor.predict(test[:20])  # one Record per row, label "projection"
        projections = [list(r.label["projection"].float32_tensor.values) for r in records]
        predictor.serializer, predictor.deserializer = CSVSerializer(), JSONDeserializer()
        answer = predictor.predict(test[:20])  # {"projections": [{"projection": [...]}, ...]}
    finally:
        predictor.delete_model()  # before the endpoint: it reads the endpoint's config
        predictor.delete_endpoint()
    print("first projection:", np.round(projections[0], 3))

    lines = setup.batch_transform(estimator, "batch.csv", content_type="text/csv", accept="application/jsonlines")
    return {"recordio": projections, "json": answer, "transform": [json.loads(line) for line in lines],
            "train": train, "test": test, "metric_definitions": METRICS}


if __name__ == "__main__":
    main()
