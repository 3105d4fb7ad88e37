"""Training the shipped default model (``python -m training.train_default``): its recipe, resumable."""
