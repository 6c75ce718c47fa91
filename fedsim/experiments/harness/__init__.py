"""The run harness every experiment kind shares: results store and parts, folder lock, executors, seeds."""
