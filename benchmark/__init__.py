"""Runner of the self-supervised pretext-task benchmark: grid, planner, executor, MLflow tracking."""
