"""Build labelled Hugging Face datasets of AIA images from HEK, GOES XRS and AIA sources."""
