"""Running a search: the context strategies work through, the run store, checkpoints, the
run loop and the Pareto outputs."""
