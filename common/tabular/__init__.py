"""Tabular helpers shared by the LightGBM and CatBoost images."""
