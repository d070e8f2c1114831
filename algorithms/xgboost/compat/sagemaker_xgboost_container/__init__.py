"""The helpers training scripts import from the SageMaker XGBoost image, under the same names.

Thin wrappers over this image's own code: `distributed.rabit_run` (common/cluster/collective.py on XGBoost's
collective), `data_utils.get_dmatrix` (the shared readers), `checkpointing.train` (xgboost-checkpoint.<n>
files) and `encoder` (request bodies to DMatrix). Script mode puts the folder above this one on PYTHONPATH.
"""
