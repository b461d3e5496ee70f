"""The two LightningModules (pretraining, linear probe) and what a run needs around them: optimizers and
schedules, the Trainer and its precision, checkpoints and resuming from them, randomness, resilience,
synchronised BatchNorm, progress and the CSV logger.
"""
