"""The run's pipeline stages, in data-flow order: launch -> embed -> views -> probe -> analyse -> assemble.

Each stage is a function with typed inputs and outputs (orchestrator/stages/types.py); none reads another
stage's private state. orchestrator/runner.py strings them together.
"""
