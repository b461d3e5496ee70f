"""What the entry points call: `train_ssl`, `train_linear`, the encoder export and `load_encoder`, the sweep
summary, the Optuna study checks, and how a job reports a failure (`cli`, `reporting`).
"""
