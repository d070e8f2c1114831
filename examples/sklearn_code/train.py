"""examples/sklearn.py's code: the SKLearn estimator's entry_point, run as a script to train, and
imported by the endpoint for model_fn and predict_fn (input_fn and output_fn are the image's own:
CSV, JSON or NPY in and out)."""

import argparse
import os

import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def predict_fn(data, model):
    return model.predict_proba(data)  # one row of class probabilities per request row


def load(folder):
    table = np.loadtxt(os.path.join(folder, os.listdir(folder)[0]), delimiter=",", ndmin=2)
    return table[:, 1:], table[:, 0]  # the label first


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n_estimators", type=int, default=100)
    parser.add_argument("--max_depth", type=int, default=None)
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR"))
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--validation", default=os.environ.get("SM_CHANNEL_VALIDATION"))
    args = parser.parse_args()

    x, y = load(args.train)
    model = RandomForestClassifier(n_estimators=args.n_estimators, max_depth=args.max_depth, random_state=0)
    model.fit(x, y)
    vx, vy = load(args.validation)
    print(f"validation-accuracy: {model.score(vx, vy):.4f}")  # the estimator's metric regex reads this
    joblib.dump(model, os.path.join(args.model_dir, "model.joblib"))
