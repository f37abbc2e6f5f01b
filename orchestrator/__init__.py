"""The orchestrator: datasets, preprocessing, dispatch to servers, cache, report."""
