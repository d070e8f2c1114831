"""The part of `sagemaker_containers` (installed in AWS's SKLearn image) that training scripts import: the
content type names of `_content_types`."""
