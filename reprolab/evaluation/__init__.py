"""The evaluation library: metrics per model, the summary, plots, model cards, drift, the gate, the PR report."""
