"""The SageMaker training and hosting contract shared by every algorithm image."""
