"""The hosts of one training job and the collective that joins them."""
