"""Monte Carlo sweeps: tasks, executors (serial, process, ray), the results store and the runner."""
